//! Fleet mode against a Redis Cluster of three primaries the test starts itself, with the
//! ban and limit scenarios of `fleet.rs` and `fleet_limits.rs`: the hosts are given a node
//! that does not hold the fleet's hash slot and find the one that does; credential stuffing
//! spread over two hosts, under each one's threshold, bans the source at both (counted on that
//! node); a host started later gets the ban at start; an unban on it lifts the ban everywhere;
//! a fleet-scoped limit keeps one budget across the three hosts while a host-scoped one does
//! not; and every key the fleet writes lives on the one node that holds its slot.

// Hosts are numbered: `k` names the namespace, the address and the daemon alike.
#![allow(clippy::needless_range_loop)]

use crate::support;

use std::{net::Ipv4Addr, sync::Arc};

use support::{
    daemon::cli,
    fleet_hosts::{assert_dropped, host, request, start, Host, Setup, GOOD, HOSTS, SPREAD},
    fleet_net::{redis_available, FleetNet},
    https::TestPki,
    privileged,
};

use crate::fleet_limits::{spread, BURST, RATE, ROUTES};

const BAD: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 67);
const NODES: [u16; 3] = [7001, 7002, 7003];
/// Auth failures that ban a source, on one host or across the fleet.
const THRESHOLD: u32 = 4;

#[test]
fn bans_and_fleet_limits_work_against_a_redis_cluster() {
    let test = "bans_and_fleet_limits_work_against_a_redis_cluster";
    if !privileged::can_run(test, true) || !redis_available(test) {
        return;
    }
    let net = FleetNet::new(3);
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
    let setup = Setup::new(&fleet, THRESHOLD, ROUTES, NODES[0]);
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    let mut hosts: Vec<Host> = (0..3)
        .map(|k| host(&net, k, dir.path(), &pki, &setup))
        .collect();
    let settle = |k: usize, host: &mut Host| {
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
            "{} did not settle on the slot's owner, port {owner}",
            HOSTS[k]
        );
    };
    for k in 0..2 {
        settle(k, &mut hosts[k]);
    }

    // Credential stuffing over A and B: three failures each, under each host's threshold of
    // four, six in all. Counted on the slot's node, it bans the source at both.
    let mut failures = 0;
    for round in 0..3 {
        for k in 0..2 {
            match request(&net, k, BAD, "wrong-key", &ca) {
                Ok(401) => failures += 1,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                other => panic!("round {round}, {}: {other:?}", HOSTS[k]),
            }
        }
    }
    assert!(failures >= THRESHOLD, "only {failures} failures answered");
    for k in 0..2 {
        hosts[k]
            .daemon()
            .wait_for("source banned at the NIC by", SPREAD)
            .unwrap();
        assert_dropped(&net, k, &hosts[k], BAD, &ca);
    }
    let stored = net.redis_cli(owner, &["HKEYS", &format!("api-shield:{{{fleet}}}:bans")]);
    assert!(stored.contains(&format!("{BAD}/32")), "{stored}");

    // C, started now, gets the ban from the cluster at start.
    settle(2, &mut hosts[2]);
    assert_dropped(&net, 2, &hosts[2], BAD, &ca);
    let ban = &hosts[2].bans()[0];
    assert_eq!(ban["target"], format!("{BAD}/32"), "{ban}");
    assert_eq!(ban["reason"], "escalation:auth-failures", "{ban}");
    assert!(
        ban["origin"] == HOSTS[0] || ban["origin"] == HOSTS[1],
        "{ban}"
    );

    // An unban on C lifts it everywhere.
    let (code, _, stderr) = cli(&[
        "unban",
        &BAD.to_string(),
        "--config",
        &hosts[2].config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for k in 0..2 {
        hosts[k]
            .daemon()
            .wait_for("ban lifted by the fleet", SPREAD)
            .unwrap();
    }
    for k in 0..3 {
        assert_eq!(
            request(&net, k, BAD, "good-key", &ca).unwrap(),
            200,
            "{}",
            HOSTS[k]
        );
    }

    // One budget across the three hosts on the fleet-scoped route...
    let (admitted, limited, elapsed) = spread(&net, "/api/v1/users/fleet", 3.0, &ca);
    let budget = BURST + RATE * elapsed;
    eprintln!("cluster, fleet scope: {admitted} admitted, {limited} limited in {elapsed:.2} s (budget {budget:.0})");
    assert!(limited > 0, "the fleet route never limited");
    assert!(
        f64::from(admitted) <= budget * 1.25 + 3.0 && f64::from(admitted) >= budget * 0.75,
        "{admitted} admitted across the fleet against a budget of {budget:.0}"
    );
    // Every key of the fleet (counts, limits, the epoch) is on the slot's node, none
    // elsewhere (looked at while the limit's keys live: they expire once their TAT passes).
    // (One auth failure of the good client makes a count, far under the threshold.)
    assert_eq!(request(&net, 0, GOOD, "wrong-key", &ca).unwrap(), 401);
    // (The count reaches Redis with the link's next sync, within 50 ms.)
    let pattern = format!("api-shield:{{{fleet}}}:*");
    let scan = |port: u16| net.redis_cli(port, &["--scan", "--pattern", &pattern]);
    let kinds = [":rl:", ":esc:", ":epoch", ":peers", ":unbans"];
    support::fleet_hosts::eventually("every kind of key on the owner", SPREAD, || {
        let keys = scan(owner);
        kinds.iter().all(|kind| keys.contains(kind))
    });
    for port in NODES.into_iter().filter(|p| *p != owner) {
        let keys = scan(port);
        assert!(keys.trim().is_empty(), "keys on node {port}: {keys}");
    }
    // ...and one per host on the host-scoped route.
    let (admitted, _, elapsed) = spread(&net, "/api/v1/users/host", 3.0, &ca);
    let budget = BURST + RATE * elapsed;
    assert!(
        f64::from(admitted) >= budget * 2.0,
        "a host-scoped route admitted {admitted}: not one budget per host ({budget:.0} each)"
    );
}
