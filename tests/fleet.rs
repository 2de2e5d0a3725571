//! Fleet mode end to end: three daemons in three network namespaces, each with XDP attached in
//! driver mode to its own veth, sharing bans through a Redis server the test starts; clients
//! reach every host from one client namespace.
//!
//! A source banned by escalation on host A is dropped at B's NIC; a host started later gets
//! the ban at start; `api-shield bans` names where it came from; an unban on C lifts it
//! everywhere. Entries written into Redis by hand (`::/0`, host bits, not an address, a huge
//! TTL) are refused and logged, never applied. With Redis killed, hosts keep serving and say
//! they are alone; a ban made meanwhile is shared once Redis is back, and Redis restarted
//! empty gets the fleet's bans again; a ban whose share was lost with a restart is published
//! by its host, not lifted.

// Hosts are numbered: `k` names the namespace, the address and the daemon alike.
#![allow(clippy::needless_range_loop)]

use crate::support;

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use support::{
    admin::value,
    daemon::cli,
    fleet_hosts::{
        assert_dropped, eventually, fleet_status, host, metrics, request, start, Host, Setup, GOOD,
        HOSTS, REDIS_PORT, SPREAD,
    },
    fleet_net::{redis_available, FleetNet},
    https::TestPki,
    privileged,
};

const BAD: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 66);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 88);
const THRESHOLD: u32 = 4;

#[test]
fn a_ban_on_one_host_drops_the_source_at_every_host() {
    let test = "a_ban_on_one_host_drops_the_source_at_every_host";
    if !privileged::can_run(test, true) || !redis_available(test) {
        return;
    }
    let net = FleetNet::new(3);
    for src in [BAD, GOOD, OTHER] {
        net.add_source(src);
    }
    let mut redis = net.start_redis(REDIS_PORT);
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    let fleet = support::unique("fleet-");
    let setup = Setup::new(&fleet, THRESHOLD, "", REDIS_PORT);
    let mut hosts: Vec<Host> = (0..3)
        .map(|k| host(&net, k, dir.path(), &pki, &setup))
        .collect();
    start(&net, 0, &mut hosts[0], &ca);
    start(&net, 1, &mut hosts[1], &ca);
    for host in &mut hosts[..2] {
        host.daemon()
            .wait_for("fleet: connected and resynced", SPREAD)
            .unwrap();
    }

    // Credential stuffing on host A: banned there by escalation, and at B through the fleet.
    for _ in 0..THRESHOLD {
        assert_eq!(request(&net, 0, BAD, "wrong-key", &ca).unwrap(), 401);
    }
    hosts[0]
        .daemon()
        .wait_for("source banned at the NIC by escalation", SPREAD)
        .unwrap();
    hosts[1]
        .daemon()
        .wait_for("source banned at the NIC by the fleet", SPREAD)
        .unwrap();
    assert_dropped(&net, 0, &hosts[0], BAD, &ca);
    assert_dropped(&net, 1, &hosts[1], BAD, &ca);
    assert_eq!(request(&net, 1, GOOD, "good-key", &ca).unwrap(), 200);
    let bans = hosts[1].bans();
    assert_eq!(bans[0]["target"], format!("{BAD}/32"), "{bans}");
    assert_eq!(bans[0]["reason"], "escalation:auth-failures");
    assert_eq!(bans[0]["origin"], "host-a", "{bans}");
    let (_, table, _) = cli(&["bans", "--config", &hosts[1].config_arg()]);
    assert!(
        table.contains("ORIGIN") && table.contains("host-a"),
        "{table}"
    );

    // Entries written into Redis by hand are refused, logged and never applied.
    let key = format!("api-shield:{{{fleet}}}:bans");
    let far = 4_102_444_800_000u64; // 2100-01-01
    let poisoned = [
        (
            "::/0",
            "{\"reason\":\"x\",\"host\":\"evil\",\"created_ms\":1}".to_owned(),
        ),
        (
            "10.211.0.1/8",
            "{\"reason\":\"x\",\"host\":\"evil\",\"created_ms\":1}".to_owned(),
        ),
        (
            "not-an-address",
            "{\"reason\":\"x\",\"host\":\"evil\",\"created_ms\":1}".to_owned(),
        ),
        (
            "10.211.0.99/32",
            format!("{{\"reason\":\"x\",\"host\":\"evil\",\"created_ms\":1,\"expires_ms\":{far}}}"),
        ),
        ("10.211.0.98/32", "not json".to_owned()),
    ];
    for (target, record) in &poisoned {
        net.redis_cli(REDIS_PORT, &["HSET", &key, target, record]);
    }
    // A host started now resyncs from Redis: it gets A's ban and refuses the rest.
    start(&net, 2, &mut hosts[2], &ca);
    let c = hosts[2].daemon();
    c.wait_for("fleet: connected and resynced", SPREAD).unwrap();
    let summary = c
        .log
        .iter()
        .find(|l| l.contains("fleet: bans resynced"))
        .expect("a resync summary")
        .clone();
    for count in ["\"applied\":1", "\"refused\":5", "\"stored\":6"] {
        assert!(summary.contains(count), "{count} in {summary}");
    }
    c.wait_for_count("fleet: entry refused", 3, SPREAD).unwrap();
    c.wait_for_count("fleet: ban refused", 2, SPREAD).unwrap();
    assert_dropped(&net, 2, &hosts[2], BAD, &ca);
    let bans = hosts[2].bans();
    assert_eq!(
        bans.as_array().unwrap().len(),
        1,
        "only A's ban applies: {bans}"
    );
    // The same entries said on the channel are refused too.
    let channel = key.clone();
    net.redis_cli(
        REDIS_PORT,
        &[
            "PUBLISH",
            &channel,
            "{\"op\":\"ban\",\"target\":\"0.0.0.0/0\",\"reason\":\"x\",\"host\":\"evil\",\"created_ms\":1}",
        ],
    );
    hosts[0]
        .daemon()
        .wait_for("fleet: ban refused", SPREAD)
        .unwrap();
    assert_eq!(request(&net, 0, GOOD, "good-key", &ca).unwrap(), 200);

    // Every host sees the others.
    eventually(
        "host A lists its three peers",
        Duration::from_secs(15),
        || fleet_status(&hosts[0])["peers"] == serde_json::json!(HOSTS),
    );
    let status = fleet_status(&hosts[0]);
    assert_eq!(status["connected"], true, "{status}");
    assert!(status["last_resync"].is_string(), "{status}");
    let (_, text, _) = cli(&["status", "--config", &hosts[0].config_arg()]);
    assert!(
        text.contains("fleet:") && text.contains("as host-a, connected"),
        "{text}"
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

    // Redis killed: every host keeps serving, alone, and says so once.
    drop(redis);
    for host in &mut hosts {
        host.daemon().wait_for("fleet: lost Redis", SPREAD).unwrap();
    }
    for k in 0..3 {
        let started = Instant::now();
        assert_eq!(request(&net, k, GOOD, "good-key", &ca).unwrap(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{} waited on Redis",
            HOSTS[k]
        );
    }
    assert_eq!(fleet_status(&hosts[1])["connected"], false);
    let samples = metrics(&net, 1);
    assert_eq!(value(&samples, "api_shield_fleet_connected{}"), 0.0);
    assert_eq!(value(&samples, "api_shield_fleet_fallbacks_total{}"), 1.0);
    // A ban made while Redis is gone holds on its own host at once...
    let (code, _, stderr) = cli(&[
        "ban",
        &OTHER.to_string(),
        "--ttl",
        "5m",
        "--config",
        &hosts[1].config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_dropped(&net, 1, &hosts[1], OTHER, &ca);
    // ...and a local-only one is never shared.
    let (code, _, stderr) = cli(&[
        "ban",
        "10.211.0.55",
        "--local",
        "--config",
        &hosts[1].config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");

    // Redis back, empty: the fleet's bans are stored again and B's ban reaches A and C.
    redis = net.start_redis(REDIS_PORT);
    for k in [0, 2] {
        eventually(&format!("{} gets B's ban", HOSTS[k]), SPREAD, || {
            hosts[k]
                .bans()
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["target"] == format!("{OTHER}/32") && b["origin"] == "host-b")
        });
    }
    assert_dropped(&net, 0, &hosts[0], OTHER, &ca);
    let stored = net.redis_cli(REDIS_PORT, &["HKEYS", &key]);
    assert!(stored.contains(&format!("{OTHER}/32")), "{stored}");
    assert!(
        !stored.contains("10.211.0.55"),
        "a local ban was shared: {stored}"
    );
    for k in [0, 2] {
        assert!(
            !hosts[k].bans().to_string().contains("10.211.0.55"),
            "a local ban reached {}",
            HOSTS[k]
        );
    }

    // Redis frozen (a partition that closes nothing): the heartbeat's timeout notices, and
    // the hosts reconnect once it answers again.
    let pid = nix::unistd::Pid::from_raw(redis.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    for host in &mut hosts {
        host.daemon()
            .wait_for_count("fleet: lost Redis", 2, SPREAD)
            .unwrap();
    }
    assert!(
        hosts[0]
            .daemon()
            .log
            .iter()
            .any(|l| l.contains("fleet: lost Redis") && l.contains("within fleet.timeout")),
        "the frozen Redis was not noticed by a timeout"
    );
    assert_eq!(request(&net, 0, GOOD, "good-key", &ca).unwrap(), 200);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    for host in &mut hosts {
        host.daemon()
            .wait_for_count("fleet: connected and resynced", 3, Duration::from_secs(10))
            .unwrap();
    }

    // A ban whose share never reached Redis (made while Redis was gone, and the daemon
    // restarted before it came back, losing its queue) is this host's own and unbanned
    // nowhere: the restarted host publishes it instead of taking it for one lifted elsewhere.
    drop(redis);
    hosts[1]
        .daemon()
        .wait_for_count("fleet: lost Redis", 3, SPREAD)
        .unwrap();
    let queued = "10.211.0.56";
    let (code, _, stderr) = cli(&[
        "ban",
        queued,
        "--ttl",
        "5m",
        "--config",
        &hosts[1].config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    hosts[1].daemon.take();
    let _redis = net.start_redis(REDIS_PORT);
    // A and C are back first, so B finds the fleet's data in place (no republishing of
    // everything) and has to tell its own unshared ban from one unbanned elsewhere.
    for k in [0, 2] {
        hosts[k]
            .daemon()
            .wait_for_count("fleet: connected and resynced", 4, Duration::from_secs(10))
            .unwrap();
    }
    start(&net, 1, &mut hosts[1], &ca);
    eventually(
        "host A gets B's ban that never reached Redis",
        SPREAD,
        || {
            hosts[0]
                .bans()
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["target"] == format!("{queued}/32") && b["origin"] == "host-b")
        },
    );
}
