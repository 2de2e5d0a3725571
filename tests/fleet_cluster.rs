//! Fleet mode against a Redis Cluster of three primaries the test starts itself: the hosts are
//! given a node that does not hold the fleet's hash slot and find the one that does; a ban
//! made on one host drops the source at the other, stored on that node; a fleet-scoped limit
//! keeps one budget across the hosts.

use crate::support;

use std::{net::Ipv4Addr, sync::Arc};

use support::{
    daemon::cli,
    fleet_hosts::{assert_dropped, host, start, Host, Setup, GOOD, SPREAD},
    fleet_net::{redis_available, FleetNet},
    https::TestPki,
    privileged,
};

use crate::fleet_limits::{spread, BURST, RATE, ROUTES};

const BAD: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 67);
const NODES: [u16; 3] = [7001, 7002, 7003];

#[test]
fn bans_and_fleet_limits_work_against_a_redis_cluster() {
    let test = "bans_and_fleet_limits_work_against_a_redis_cluster";
    if !privileged::can_run(test, true) || !redis_available(test) {
        return;
    }
    let net = FleetNet::new(2);
    for src in [GOOD, BAD] {
        net.add_source(src);
    }
    let dir = tempfile::tempdir().unwrap();
    let _cluster = net.start_redis_cluster(NODES, dir.path());
    // A fleet whose slot the first node does not hold (it answers MOVED), so the hosts, given
    // that node, have to find the owner.
    let (fleet, owner) = (0..)
        .map(|i| support::unique(&format!("fleet{i}-")))
        .find_map(|name| {
            let answer = net.redis_cli(NODES[0], &["GET", &format!("api-shield:{{{name}}}:epoch")]);
            let port = answer
                .trim()
                .strip_prefix("MOVED ")?
                .rsplit(':')
                .next()?
                .parse::<u16>()
                .ok()?;
            Some((name, port))
        })
        .unwrap();
    let setup = Setup {
        fleet: &fleet,
        threshold: 100,
        routes: ROUTES,
        redis_port: NODES[0],
    };
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    let mut hosts: Vec<Host> = (0..2)
        .map(|k| host(&net, k, dir.path(), &pki, &setup))
        .collect();
    for (k, host) in hosts.iter_mut().enumerate() {
        start(&net, k, host, &ca);
        host.daemon()
            .wait_for("fleet: connected and resynced", SPREAD)
            .unwrap();
        assert!(
            host.daemon()
                .log
                .iter()
                .any(|l| l.contains("connected and resynced")
                    && l.contains(&format!(":{owner}\""))),
            "host {k} did not settle on the slot's owner, port {owner}"
        );
    }

    // A ban on A reaches B, and is stored on the node that holds the slot.
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
    let stored = net.redis_cli(owner, &["HKEYS", &format!("api-shield:{{{fleet}}}:bans")]);
    assert!(stored.contains(&format!("{BAD}/32")), "{stored}");

    // One budget across both hosts.
    let (admitted, limited, elapsed) = spread(&net, "/api/v1/users/fleet", 2.0, &ca);
    let budget = BURST + RATE * elapsed;
    eprintln!("cluster, fleet scope: {admitted} admitted, {limited} limited in {elapsed:.2} s (budget {budget:.0})");
    assert!(
        f64::from(admitted) <= budget * 1.25 + 3.0 && f64::from(admitted) >= budget * 0.75,
        "{admitted} admitted across the fleet against a budget of {budget:.0}"
    );
}
