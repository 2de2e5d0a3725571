//! Fleet mode over TLS to a Redis that lets in one ACL user: hosts given `rediss://`, the CA
//! that signed Redis's certificate, the user and its password from a root-only file share a
//! ban; a host given another CA refuses the server and never connects; one given the wrong
//! password is refused by Redis. Neither puts the password in its log.

// Hosts are numbered: `k` names the namespace, the address and the daemon alike.
#![allow(clippy::needless_range_loop)]

use crate::support;

use std::{net::Ipv4Addr, os::unix::fs::PermissionsExt as _, sync::Arc};

use support::{
    daemon::cli,
    fleet_hosts::{assert_dropped, fleet_status, host, start, Host, Setup, GOOD, HOSTS, SPREAD},
    fleet_net::{redis_available, FleetNet, RedisTls},
    https::TestPki,
    privileged,
};

const BAD: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 68);
const TLS_PORT: u16 = 6391;
const PASSWORD: &str = "fleet-secret-9f3c";

fn password_file(dir: &std::path::Path, name: &str, password: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A host of `fleet` on the TLS Redis, with `extra` `[fleet]` lines.
fn tls_setup<'a>(fleet: &'a str, extra: &str) -> Setup<'a> {
    let mut setup = Setup::new(fleet, 100, "", TLS_PORT);
    setup.scheme = "rediss";
    setup.fleet_extra = extra.to_owned();
    setup
}

/// The line in which `host` says it cannot reach Redis, once it says so.
fn refusal_line(host: &mut Host) -> String {
    let daemon = host.daemon();
    daemon
        .wait_for("fleet: cannot reach Redis", SPREAD)
        .unwrap();
    daemon
        .log
        .iter()
        .find(|l| l.contains("fleet: cannot reach Redis"))
        .unwrap()
        .clone()
}

#[test]
fn fleet_bans_travel_over_tls_with_an_acl_user() {
    let test = "fleet_bans_travel_over_tls_with_an_acl_user";
    if !privileged::can_run(test, true) || !redis_available(test) {
        return;
    }
    let net = FleetNet::new(3);
    for src in [GOOD, BAD] {
        net.add_source(src);
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    // Redis's certificate names the address each host reaches it at.
    let names: Vec<String> = (0..3).map(|k| net.redis_addr(k).to_string()).collect();
    let (cert, key) = pki.server_identity(dir.path(), "redis", &names);
    let tls = RedisTls {
        port: TLS_PORT,
        cert,
        key,
        ca: pki.ca_file.clone(),
        user: "fleet".to_owned(),
        password: PASSWORD.to_owned(),
    };
    let _redis = net.start_redis_tls(&tls);

    let fleet = support::unique("fleet-");
    let good = password_file(dir.path(), "fleet.password", PASSWORD);
    let wrong = password_file(dir.path(), "wrong.password", "not-the-password");
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other_ca = TestPki::new(&other_dir);
    let fleet_lines = |password: &std::path::Path, ca_file: &std::path::Path| {
        format!(
            "username = \"fleet\"\npassword_file = \"{}\"\nca_file = \"{}\"",
            password.display(),
            ca_file.display()
        )
    };
    let setups = [
        fleet_lines(&good, &pki.ca_file),
        fleet_lines(&good, &pki.ca_file),
        fleet_lines(&good, &other_ca.ca_file),
    ];
    let mut hosts: Vec<Host> = setups
        .iter()
        .enumerate()
        .map(|(k, extra)| host(&net, k, dir.path(), &pki, &tls_setup(&fleet, extra)))
        .collect();
    for k in 0..2 {
        start(&net, k, &mut hosts[k], &ca);
        let daemon = hosts[k].daemon();
        daemon
            .wait_for("fleet: connected and resynced", SPREAD)
            .unwrap();
        assert!(
            daemon
                .log
                .iter()
                .any(|l| l.contains("connected and resynced") && l.contains("rediss://")),
            "{} did not say it connected over TLS",
            HOSTS[k]
        );
    }

    // A ban on A reaches B over TLS, stored where the ACL user may write.
    let (code, _, stderr) = cli(&[
        "ban",
        &BAD.to_string(),
        "--ttl",
        "5m",
        "--config",
        &hosts[0].config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    hosts[1]
        .daemon()
        .wait_for("source banned at the NIC by the fleet", SPREAD)
        .unwrap();
    assert_dropped(&net, 1, &hosts[1], BAD, &ca);
    let stored = net.redis_cli_tls(&tls, &["HKEYS", &format!("api-shield:{{{fleet}}}:bans")]);
    assert!(stored.contains(&format!("{BAD}/32")), "{stored}");

    // C trusts another CA: Redis's certificate is refused, C never connects, and it serves
    // alone.
    start(&net, 2, &mut hosts[2], &ca);
    let refusal = refusal_line(&mut hosts[2]);
    assert!(
        refusal.to_lowercase().contains("certificate"),
        "not refused for its certificate: {refusal}"
    );
    assert_eq!(fleet_status(&hosts[2])["connected"], false);
    assert!(
        hosts[2].bans().as_array().unwrap().is_empty(),
        "C holds a ban from a server it does not trust"
    );

    // C given the right CA and the wrong password: Redis refuses it. C reloads nothing
    // fleet-wise (the table is read at start), so it restarts with the new settings.
    // Host C goes whole, its demo API with it, before the new one binds the demo's port
    // (assigning over it would start the new demo API while the old one holds the port).
    drop(hosts.pop());
    let setup = tls_setup(&fleet, &fleet_lines(&wrong, &pki.ca_file));
    hosts.push(host(&net, 2, dir.path(), &pki, &setup));
    start(&net, 2, &mut hosts[2], &ca);
    let refusal = refusal_line(&mut hosts[2]);
    assert!(
        refusal.contains("WRONGPASS") || refusal.to_lowercase().contains("auth"),
        "not refused for its password: {refusal}"
    );

    // No host ever logged a password.
    for (k, host) in hosts.iter_mut().enumerate() {
        assert!(
            !host
                .daemon()
                .log
                .iter()
                .any(|l| l.contains(PASSWORD) || l.contains("not-the-password")),
            "{} logged a password",
            HOSTS[k]
        );
    }
}
