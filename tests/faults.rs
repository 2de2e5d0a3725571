//! Faults of the host around the daemon: logs on a full disk, no BPF filesystem mounted, a pin
//! directory that is not on one, and an interface disappearing (and coming back) while the
//! program is attached. Each gives the documented behaviour and a clear log line, never a crash.

use crate::support;

use std::{
    net::{IpAddr, SocketAddr},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    admin::{scrape, value},
    daemon::{binary, cli, start_expecting_failure, Daemon},
    fastpath_setup::{Setup, PROTECTED},
    https::{client_config, get, send, Upstream, Version},
    shield::{config_text, ROUTES},
};

/// The daemon's status through its control socket, once it answers (bounded wait).
fn status_when_up(socket: &str, child: &mut std::process::Child) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let (code, out, _) = cli(&["status", "--json", "--socket", socket]);
        if code == 0 {
            return serde_json::from_str(&out).unwrap();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon exited before answering"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon never answered on {socket}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_a_full_disk_never_stop_the_shield() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = support::https::TestPki::new(dir.path());
    let config = dir.path().join("api-shield.toml");
    std::fs::write(
        &config,
        config_text(upstream.addr, ROUTES, "", "", "", &pki, dir.path()),
    )
    .unwrap();
    // Every log line fails to write with ENOSPC, as on a full disk.
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut child = Command::new(binary())
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(full())
        .stderr(full())
        .spawn()
        .unwrap();
    let socket = dir.path().join("control.sock").display().to_string();
    let status = status_when_up(&socket, &mut child);
    let addr_of = |name: &str| -> SocketAddr {
        status["listening"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let https = addr_of("listener-0");
    let admin: SocketAddr = status["admin"].as_str().unwrap().parse().unwrap();
    // Served and refused requests, each with an access-log line that cannot be written.
    for n in 0..20 {
        let ok = send(
            https,
            client_config(&pki.ca, Version::H1),
            Version::H1,
            get("GET", &format!("/public/{n}")),
        )
        .await;
        assert_eq!(ok.status, 200);
        let missing = send(
            https,
            client_config(&pki.ca, Version::H2),
            Version::H2,
            get("GET", "/nowhere"),
        )
        .await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.headers["content-type"], "application/problem+json");
    }
    assert_eq!(upstream.seen().len(), 20);
    // The lost lines are counted, so an operator can see them go: the access log's as the
    // writer thread fails to write them (within its flush interval), the others at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(admin).await;
        let access = value(&samples, "api_shield_access_log_dropped_total{}");
        let written = value(&samples, "api_shield_access_log_lines_total{}");
        assert_eq!(written, 0.0, "access-log lines written to /dev/full?");
        if access >= 40.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{access} lost access-log lines counted of 40"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");
    // And it still stops cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn without_a_mounted_bpffs_the_daemon_mounts_one_and_filters() {
    let Some((_serial, setup)) = Setup::new(
        "without_a_mounted_bpffs_the_daemon_mounts_one_and_filters",
        "",
    ) else {
        return;
    };
    // A private mount namespace with /sys/fs/bpf unmounted: the host's stays as it is.
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        // Whatever the host has there (nothing, or mounts stacked), none is left.
        "while mountpoint -q /sys/fs/bpf; do umount /sys/fs/bpf || exit 1; done; exec \"$@\"",
        "sh",
    ];
    let mut daemon = Daemon::start_wrapped(Some(&setup.topo.rx.name), &wrapper, &setup.config, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        daemon
            .log
            .iter()
            .any(|l| l.contains("mounting a BPF filesystem")),
        "{:#?}",
        daemon.log
    );
    // The program filters with the maps it pinned there: a ban drops, others pass.
    let banned: IpAddr = "10.201.1.5".parse().unwrap();
    let other: IpAddr = "10.201.1.7".parse().unwrap();
    setup.topo.add_sources(&[banned, other]);
    let (code, out, err) = cli(&[
        "ban",
        "10.201.1.5",
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(setup.delivered(banned, PROTECTED, 10), 0);
    assert_eq!(setup.delivered(other, PROTECTED, 10), 10);
    let exit = daemon.stop().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_pin_dir_outside_bpffs_is_refused_with_its_path() {
    let Some((_serial, setup)) = Setup::new("a_pin_dir_outside_bpffs_is_refused_with_its_path", "")
    else {
        return;
    };
    let elsewhere = setup.dir.path().join("pins");
    let text = std::fs::read_to_string(&setup.config).unwrap().replace(
        &setup.pins.path.display().to_string(),
        &elsewhere.display().to_string(),
    );
    std::fs::write(&setup.config, text).unwrap();
    let failure = start_expecting_failure(Some(&setup.topo.rx.name), &setup.config);
    assert_ne!(failure.code, Some(0));
    assert!(
        failure.log.contains("not on a BPF filesystem")
            && failure.log.contains(&elsewhere.display().to_string()),
        "{}",
        failure.log
    );
}

#[test]
fn an_interface_that_disappears_is_followed_and_attached_again_when_it_returns() {
    let Some((_serial, setup)) = Setup::new(
        "an_interface_that_disappears_is_followed_and_attached_again_when_it_returns",
        "",
    ) else {
        return;
    };
    let banned: IpAddr = "10.201.1.6".parse().unwrap();
    let other: IpAddr = "10.201.1.8".parse().unwrap();
    setup.topo.add_sources(&[banned, other]);
    let mut daemon = setup.daemon();
    let (code, out, err) = cli(&[
        "ban",
        "10.201.1.6",
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(setup.delivered(banned, PROTECTED, 20), 0);

    // The veth pair goes away under the attached program.
    setup
        .topo
        .rx
        .exec(&["link", "del", "dev", &setup.topo.rx_if]);
    daemon
        .wait_for("interface disappeared", Duration::from_secs(10))
        .unwrap();
    let (code, out, _) = cli(&["status", "--json", "--config", &setup.config_arg()]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["interfaces"][0]["mode"], "gone", "{status}");

    // It comes back as a new device of the same name: the program is attached to it again,
    // with the ban still in force.
    setup.restore_link(&[banned, other]);
    daemon
        .wait_for("interface is back: attached again", Duration::from_secs(10))
        .unwrap();
    let (code, out, _) = cli(&["status", "--json", "--config", &setup.config_arg()]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_ne!(status["interfaces"][0]["mode"], "gone", "{status}");
    assert_eq!(setup.delivered(banned, PROTECTED, 10), 0);
    assert_eq!(setup.delivered(other, PROTECTED, 10), 10);
    let exit = daemon.stop().unwrap();
    assert!(exit.success(), "{exit:?}");
}
