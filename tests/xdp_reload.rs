//! A config reload against the real daemon attached to a veth in a network namespace: a reload
//! that fails at any of its steps changes nothing (the kernel maps, the routes served over HTTPS
//! from the other namespace, the control socket), and the good file then applies whole.

use std::time::Duration;

use crate::support;

use api_shield::fastpath::PinnedMaps;
use api_shield_common::ShieldConfig;
use support::{
    daemon::{cli, cli_json, ChildGuard, Daemon},
    fastpath_setup::{Setup, ALLOWED_SRC},
    https::{status_from, TestPki},
    netns::RX_V4,
};

/// The deny list in the kernel, as (prefix length, key bytes) pairs.
fn deny_entries(setup: &Setup) -> std::collections::BTreeSet<(u32, [u8; 16])> {
    let maps = PinnedMaps::open(&setup.pins.layout()).unwrap();
    maps.deny_keys().unwrap().into_iter().collect()
}

fn settings_word(setup: &Setup) -> ShieldConfig {
    PinnedMaps::open(&setup.pins.layout())
        .unwrap()
        .config
        .get(&0, 0)
        .unwrap()
}

/// A reload that fails at any of its steps changes nothing: reading the file, checking it
/// against the host, compiling its policies, binding a moved control socket, and writing the
/// kernel maps (a fail point after the lists are written, before the settings word). After each,
/// the maps hold the running config's lists and settings, the listener serves the running
/// routes, the control socket stays where it was. Then the good file applies whole.
#[test]
fn a_reload_failing_at_any_step_changes_nothing() {
    let Some((_serial, mut setup)) = Setup::new("a_reload_failing_at_any_step_changes_nothing", "")
    else {
        return;
    };
    let pki = TestPki::new(setup.dir.path());
    let port = 8443;
    let proxy_config = |deny: &str, route: &str, socket: &str, route_extra: &str| {
        format!(
            r#"deny = ["{deny}"]
[[listeners]]
bind = "{RX_V4}:{port}"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]
[[upstreams]]
name = "demo"
url = "http://127.0.0.1:9000"
[[routes]]
name = "only"
path = "{route}"
upstream = "demo"
{route_extra}
[control]
socket = "{socket}"
"#,
            cert = pki.cert.display(),
            key = pki.key.display(),
        )
    };
    let first_socket = setup.dir.path().join("first.sock");
    let moved_socket = setup.dir.path().join("moved.sock");
    setup.write_config(&proxy_config(
        "10.203.0.0/24",
        "/api/v1/users/*",
        &first_socket.display().to_string(),
        "",
    ));
    let _demo = ChildGuard::spawn(
        std::process::Command::new("ip")
            .args(["netns", "exec", &setup.topo.rx.name])
            .arg(support::daemon::binary())
            .args(["demo-api", "--bind", "127.0.0.1:9000"]),
    );
    let mut daemon = Daemon::start_with_env(
        Some(&setup.topo.rx.name),
        &setup.config,
        &[("API_SHIELD_FAILPOINTS", "reload-maps")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let status = |setup: &Setup, target: &str| {
        status_from(
            &setup.topo.tx,
            ALLOWED_SRC.into(),
            std::net::SocketAddr::new(RX_V4.into(), port),
            target,
            &[],
            &pki.ca,
        )
        .unwrap()
    };
    // The demo API comes up on its own time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status(&setup, "/api/v1/users/7") != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the route is never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(status(&setup, "/health"), 404);
    let (deny_before, settings_before) = (deny_entries(&setup), settings_word(&setup));
    assert_eq!(deny_before.len(), 1);
    let socket_arg = first_socket.display().to_string();

    // The good new config changes everything: the deny list, the limiter's rate, the route, the
    // control socket.
    let new_socket = moved_socket.display().to_string();
    let good = |setup: &mut Setup, route_extra: &str, socket: &str| {
        setup.write_config(&proxy_config(
            "10.204.0.0/24",
            "/health",
            socket,
            route_extra,
        ));
        let edited = std::fs::read_to_string(&setup.config).unwrap();
        std::fs::write(&setup.config, edited.replace("rate = 100", "rate = 250")).unwrap();
    };
    let blocker = setup.dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let blocked_socket = blocker.join("control.sock").display().to_string();
    // Each step: its name, how the file is spoiled for it, and what the refusal says.
    type Spoil<'a> = Box<dyn Fn(&mut Setup) + 'a>;
    let steps: [(&str, Spoil<'_>, &str); 5] = [
        (
            "reading the file",
            Box::new(|setup: &mut Setup| {
                good(setup, "", &new_socket);
                let text = std::fs::read_to_string(&setup.config).unwrap();
                std::fs::write(&setup.config, text.replace("[[routes]]", "[[routes]\n")).unwrap();
            }),
            "api-shield.toml:",
        ),
        (
            "checking the host",
            Box::new(|setup: &mut Setup| {
                good(setup, "", &new_socket);
                let text = std::fs::read_to_string(&setup.config).unwrap();
                let interfaces = format!("interfaces = [\"{}\"]", setup.topo.rx_if);
                let more = format!("interfaces = [\"{}\", \"asx-none0\"]", setup.topo.rx_if);
                std::fs::write(&setup.config, text.replace(&interfaces, &more)).unwrap();
            }),
            "`asx-none0` does not exist",
        ),
        (
            "compiling the policies",
            Box::new(|setup: &mut Setup| {
                good(
                    setup,
                    "[routes.validate]\nbody_schema = \"/nonexistent/order.schema.json\"",
                    &new_socket,
                )
            }),
            "routes[0].validate",
        ),
        (
            "binding the moved control socket",
            Box::new(|setup: &mut Setup| good(setup, "", &blocked_socket)),
            "not-a-directory",
        ),
        (
            "writing the kernel maps",
            Box::new(|setup: &mut Setup| good(setup, "", &new_socket)),
            "fail point `reload-maps`",
        ),
    ];
    for (step, write, says) in &steps {
        write(&mut setup);
        let (code, _, err) = cli(&["reload", "--socket", &socket_arg]);
        assert_ne!(code, 0, "{step}: the reload did not fail: {err}");
        assert!(err.contains(says), "{step}: {err}");
        assert_eq!(deny_entries(&setup), deny_before, "{step}: the deny list");
        assert_eq!(
            settings_word(&setup),
            settings_before,
            "{step}: the settings"
        );
        assert_eq!(
            status(&setup, "/api/v1/users/7"),
            200,
            "{step}: the running route"
        );
        assert_eq!(status(&setup, "/health"), 404, "{step}: the new route");
        assert!(first_socket.exists() && !moved_socket.exists(), "{step}");
        let running = cli_json(&["status", "--json", "--socket", &socket_arg]);
        assert_eq!(
            running["routes"],
            serde_json::json!(["only"]),
            "{step}: {running}"
        );
    }

    // The fail point is used up: the same file now applies whole.
    let (code, out, err) = cli(&["reload", "--socket", &socket_arg]);
    assert_eq!(code, 0, "{out}{err}");
    let after = deny_entries(&setup);
    assert_eq!(after.len(), 1);
    assert_ne!(after, deny_before);
    assert_ne!(settings_word(&setup), settings_before);
    assert_eq!(status(&setup, "/health"), 200);
    assert_eq!(status(&setup, "/api/v1/users/7"), 404);
    assert!(moved_socket.exists() && !first_socket.exists());
    daemon.stop();
}
