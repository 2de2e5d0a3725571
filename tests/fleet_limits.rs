//! Fleet-wide limits end to end, on the same three hosts as `fleet.rs`: a client spreading its
//! requests over the three hosts gets the fleet's rate on a `scope = "fleet"` route, and three
//! times as much on a `scope = "host"` route; credential stuffing spread over the hosts, below
//! each host's escalation threshold but above it in total, bans the source at every host; and
//! with Redis gone, each host limits on its own.

// Hosts are numbered: `k` names the namespace, the address and the daemon alike.
#![allow(clippy::needless_range_loop)]

use crate::support;

use std::{net::Ipv4Addr, sync::Arc, time::Instant};

use support::{
    fleet_hosts::{
        assert_dropped, host, request, request_to, start, Host, Setup, GOOD, HOSTS, REDIS_PORT,
        SPREAD,
    },
    fleet_net::{redis_available, FleetNet},
    https::TestPki,
    privileged,
};

const STUFFER: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 99);
/// Auth failures from one source that ban it, counted on one host or across the fleet.
const THRESHOLD: u32 = 6;
/// Both limited routes: 10 requests per second, a burst of 10.
pub(crate) const RATE: f64 = 10.0;
pub(crate) const BURST: f64 = 10.0;
pub(crate) const ROUTES: &str = r#"
[[routes]]
name = "fleet-limited"
path = "/api/v1/users/fleet"
upstream = "demo"
rate_limit = { rate = "10 per second", burst = 10, scope = "fleet" }

[[routes]]
name = "host-limited"
path = "/api/v1/users/host"
upstream = "demo"
rate_limit = { rate = "10 per second", burst = 10 }
"#;

/// Sends requests to `target` round-robin over the hosts for `seconds`; (admitted, refused
/// with 429, elapsed seconds).
pub(crate) fn spread(
    net: &FleetNet,
    target: &str,
    seconds: f64,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> (u32, u32, f64) {
    let started = Instant::now();
    let (mut admitted, mut limited) = (0, 0);
    let mut k = 0;
    while started.elapsed().as_secs_f64() < seconds {
        match request_to(net, k % net.hosts.len(), GOOD, target, "none", ca).unwrap() {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("{target}: unexpected status {other}"),
        }
        k += 1;
    }
    (admitted, limited, started.elapsed().as_secs_f64())
}

#[test]
fn fleet_limits_and_escalation_count_across_hosts() {
    let test = "fleet_limits_and_escalation_count_across_hosts";
    if !privileged::can_run(test, true) || !redis_available(test) {
        return;
    }
    let net = FleetNet::new(3);
    for src in [GOOD, STUFFER] {
        net.add_source(src);
    }
    let redis = net.start_redis(REDIS_PORT);
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    let fleet = support::unique("fleet-");
    let setup = Setup::new(&fleet, THRESHOLD, ROUTES, REDIS_PORT);
    let mut hosts: Vec<Host> = (0..3)
        .map(|k| host(&net, k, dir.path(), &pki, &setup))
        .collect();
    for (k, host) in hosts.iter_mut().enumerate() {
        start(&net, k, host, &ca);
        host.daemon
            .as_mut()
            .unwrap()
            .wait_for("fleet: connected and resynced", SPREAD)
            .unwrap();
    }

    // One budget for the fleet: the burst plus the rate over the run, give or take what the
    // hosts admit in one sync (50 ms) before they hear of each other.
    let (admitted, limited, elapsed) = spread(&net, "/api/v1/users/fleet", 3.0, &ca);
    let budget = BURST + RATE * elapsed;
    eprintln!("fleet scope: {admitted} admitted, {limited} limited in {elapsed:.2} s (budget {budget:.0})");
    assert!(limited > 0, "the fleet route never limited");
    assert!(
        f64::from(admitted) <= budget * 1.25 + 3.0,
        "{admitted} admitted across the fleet, over a budget of {budget:.0}"
    );
    assert!(
        f64::from(admitted) >= budget * 0.75,
        "{admitted} admitted across the fleet, far under a budget of {budget:.0}"
    );

    // One budget per host: about three times as much gets through.
    let (admitted, limited, elapsed) = spread(&net, "/api/v1/users/host", 3.0, &ca);
    let budget = BURST + RATE * elapsed;
    eprintln!("host scope: {admitted} admitted, {limited} limited in {elapsed:.2} s (one host's budget {budget:.0})");
    assert!(
        f64::from(admitted) >= budget * 2.0,
        "a host-scoped route admitted {admitted}: not one budget per host ({budget:.0} each)"
    );

    // Credential stuffing spread over the hosts: up to three failures each, under every
    // host's threshold of six, nine in all (so a minute boundary in the middle, which weighs
    // the earlier ones down, still leaves six). Once the fleet bans it, its connects time out.
    let mut failures = 0;
    for round in 0..3 {
        for k in 0..3 {
            match request(&net, k, STUFFER, "wrong-key", &ca) {
                Ok(401) => failures += 1,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                other => panic!("round {round}, {}: {other:?}", HOSTS[k]),
            }
        }
    }
    assert!(
        failures >= THRESHOLD,
        "only {failures} failures were answered"
    );
    for host in &mut hosts {
        host.daemon
            .as_mut()
            .unwrap()
            .wait_for("source banned at the NIC by", SPREAD)
            .unwrap();
    }
    // One of them (whichever counted the sixth) says why.
    let deadline = Instant::now() + SPREAD;
    while !hosts.iter_mut().any(|h| {
        h.daemon()
            .wait_for(
                "reached the rule's threshold",
                std::time::Duration::from_millis(50),
            )
            .is_ok()
    }) {
        assert!(
            Instant::now() < deadline,
            "no host banned by the fleet's count"
        );
    }
    for k in 0..3 {
        assert_dropped(&net, k, &hosts[k], STUFFER, &ca);
        let ban = &hosts[k].bans()[0];
        assert_eq!(ban["target"], format!("{STUFFER}/32"), "{ban}");
        assert_eq!(ban["reason"], "escalation:auth-failures", "{ban}");
    }
    assert_eq!(
        request(&net, 0, GOOD, "good-key", &ca).unwrap(),
        200,
        "the good client is still served"
    );

    // Redis gone: each host limits alone, so about one budget per host gets through, and no
    // request waits on Redis (`spread` fails on anything but a 200 or a 429).
    drop(redis);
    for host in &mut hosts {
        host.daemon().wait_for("fleet: lost Redis", SPREAD).unwrap();
    }
    let (admitted, limited, elapsed) = spread(&net, "/api/v1/users/fleet", 2.0, &ca);
    let budget = BURST + RATE * elapsed;
    eprintln!("without Redis: {admitted} admitted, {limited} limited in {elapsed:.2} s (one host's budget {budget:.0})");
    assert!(limited > 0, "nothing limited without Redis");
    assert!(
        f64::from(admitted) >= budget * 2.0,
        "{admitted} admitted without Redis: the hosts did not fall back to their own budgets ({budget:.0} each)"
    );
}
