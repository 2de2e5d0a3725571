//! The real daemon binary attached to a veth in a network namespace, with real UDP traffic from
//! a second namespace: flood limiting accuracy, bans and their expiry, the allow list,
//! unprotected ports, the refusals and the fallback to generic mode. Tests run one at a time
//! (they measure rates). The daemon's lifecycle (restarts, pinned links, upgrades) is in
//! xdp_restarts.rs.

use crate::support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use api_shield_common::Reason;
use support::{
    daemon::{cli, cli_json, start_expecting_failure},
    fastpath_setup::{
        v4_sources, v6_sources, Setup, ALLOWED_SRC, BURST, PROTECTED, RATE, UNPROTECTED,
    },
    netns::{Netns, RX_V4},
    privileged::PinDir,
    traffic::{send_burst, send_paced, Counting, MARKER_SRC},
};

#[test]
fn flood_from_many_sources_is_limited_to_rate_times_time_plus_burst() {
    let Some((_serial, setup)) = Setup::new(
        "flood_from_many_sources_is_limited_to_rate_times_time_plus_burst",
        "",
    ) else {
        return;
    };
    let mut sources = v4_sources(1, 16);
    sources.extend(v6_sources(4));
    setup.topo.add_sources(&sources);
    let _daemon = setup.daemon();

    let report = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    assert_eq!(
        report["interfaces"][0]["mode"], "driver",
        "veth supports native XDP: {report}"
    );

    let counting = Counting::start(&setup.topo.rx, PROTECTED);
    let sent = send_paced(
        &setup.topo.tx,
        sources.clone(),
        PROTECTED,
        300,
        Duration::from_secs(2),
    );
    let received = counting.finish(&setup.topo.tx, PROTECTED);

    let mut expected_total = 0.0;
    let mut received_total = 0;
    for src in &sources {
        let s = sent[src];
        let expected = BURST as f64 + RATE as f64 * s.span.as_secs_f64();
        let got = received.get(src).copied().unwrap_or(0);
        assert!(
            (got as f64 - expected).abs() <= expected * 0.10,
            "{src}: sent {} over {:?}, received {got}, expected {expected:.0} ± 10%",
            s.count,
            s.span
        );
        expected_total += expected;
        received_total += got;
    }
    assert!((received_total as f64 - expected_total).abs() <= expected_total * 0.10);
    let stats = setup.stats();
    let sent_total: u64 = sent.values().map(|s| s.count).sum();
    assert_eq!(
        stats.packets(Reason::PassWithinLimit),
        received_total,
        "every pass was delivered"
    );
    assert_eq!(
        stats.packets(Reason::DropRateLimited),
        sent_total - received_total
    );
}

/// Sends one datagram from `src` to `port` and tells whether it got through, using an allowed
/// marker sent right behind it on the same path as the witness of a drop.
struct Probe {
    rx: UdpSocket,
    marker: UdpSocket,
}

impl Probe {
    fn new(setup: &Setup, port: u16) -> Probe {
        let rx = setup
            .topo
            .rx
            .run(move || UdpSocket::bind(("::", port)).unwrap())
            .join()
            .unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let marker = bound(&setup.topo.tx, IpAddr::V4(MARKER_SRC));
        Probe { rx, marker }
    }

    fn passes(&self, from: &UdpSocket, port: u16) -> bool {
        from.send_to(b"probe", (RX_V4, port)).unwrap();
        self.marker.send_to(b"marker", (RX_V4, port)).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = self
            .rx
            .recv_from(&mut buf)
            .expect("the marker always arrives");
        if &buf[..n] == b"probe" {
            let (n, _) = self.rx.recv_from(&mut buf).expect("the marker follows");
            assert_eq!(&buf[..n], b"marker");
            true
        } else {
            false
        }
    }
}

fn bound(ns: &Netns, src: IpAddr) -> UdpSocket {
    ns.run(move || UdpSocket::bind(SocketAddr::new(src, 0)).unwrap())
        .join()
        .unwrap()
}

#[test]
fn banned_source_loses_everything_and_returns_after_its_ttl() {
    let Some((_serial, setup)) = Setup::new(
        "banned_source_loses_everything_and_returns_after_its_ttl",
        "",
    ) else {
        return;
    };
    let banned = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 5));
    let bystander = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 6));
    setup.topo.add_sources(&[banned, bystander]);
    let mut daemon = setup.daemon();

    let ttl = Duration::from_secs(3);
    let (code, out, err) = cli(&[
        "ban",
        "10.201.1.5",
        "--ttl",
        "3s",
        "--reason",
        "test flood",
        "--config",
        &setup.config_arg(),
    ]);
    let banned_at = Instant::now();
    assert_eq!(code, 0, "{out}{err}");
    let bans = cli_json(&["bans", "--json", "--config", &setup.config_arg()]);
    assert_eq!(bans[0]["target"], "10.201.1.5/32");
    assert_eq!(bans[0]["reason"], "test flood");

    let counting = Counting::start(&setup.topo.rx, UNPROTECTED);
    send_burst(&setup.topo.tx, banned, UNPROTECTED, 200);
    send_burst(&setup.topo.tx, bystander, UNPROTECTED, 200);
    let received = counting.finish(&setup.topo.tx, UNPROTECTED);
    assert_eq!(received.get(&banned), None, "a banned source loses 100%");
    assert_eq!(received.get(&bystander), Some(&200));
    assert_eq!(setup.stats().packets(Reason::DropBanned), 200);
    daemon
        .wait_for("\"message\":\"source is being dropped\",\"source\":\"10.201.1.5\",\"reason\":\"banned\"", Duration::from_secs(5))
        .unwrap();

    // Probe until the ban lapses: never before the TTL, and soon after it.
    let probe = Probe::new(&setup, UNPROTECTED);
    let from = bound(&setup.topo.tx, banned);
    let deadline = banned_at + ttl + Duration::from_secs(5);
    let mut probes = 0;
    let passed_after = loop {
        assert!(Instant::now() < deadline, "the ban did not expire");
        probes += 1;
        if probe.passes(&from, UNPROTECTED) {
            break banned_at.elapsed();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(probes > 1, "the first probe must have been dropped");
    assert!(
        passed_after >= ttl - Duration::from_millis(100),
        "passed after {passed_after:?}, TTL {ttl:?}"
    );
    assert!(
        passed_after <= ttl + Duration::from_secs(1),
        "passed after {passed_after:?}, TTL {ttl:?}"
    );
    let bans = cli_json(&["bans", "--json", "--config", &setup.config_arg()]);
    assert_eq!(bans, serde_json::json!([]), "expired bans are not listed");
}

#[test]
fn allowed_cidr_is_never_limited() {
    let Some((_serial, setup)) = Setup::new("allowed_cidr_is_never_limited", "") else {
        return;
    };
    let _daemon = setup.daemon();
    let counting = Counting::start(&setup.topo.rx, PROTECTED);
    let sent = send_paced(
        &setup.topo.tx,
        vec![IpAddr::V4(ALLOWED_SRC)],
        PROTECTED,
        1000,
        Duration::from_secs(1),
    );
    let received = counting.finish(&setup.topo.tx, PROTECTED);
    let count = sent[&IpAddr::V4(ALLOWED_SRC)].count;
    assert!(count >= 900, "sent {count}");
    assert_eq!(received.get(&IpAddr::V4(ALLOWED_SRC)), Some(&count));
    let stats = setup.stats();
    assert_eq!(stats.packets(Reason::DropRateLimited), 0);
    assert!(stats.packets(Reason::PassAllowed) >= count);
}

#[test]
fn traffic_to_an_unprotected_port_is_untouched() {
    let Some((_serial, setup)) = Setup::new("traffic_to_an_unprotected_port_is_untouched", "")
    else {
        return;
    };
    let src = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 7));
    setup.topo.add_sources(&[src]);
    let _daemon = setup.daemon();

    let unprotected = Counting::start(&setup.topo.rx, UNPROTECTED);
    let sent = send_paced(
        &setup.topo.tx,
        vec![src],
        UNPROTECTED,
        1000,
        Duration::from_secs(1),
    );
    let got_unprotected = unprotected.finish(&setup.topo.tx, UNPROTECTED);
    assert_eq!(got_unprotected.get(&src), Some(&sent[&src].count));

    // The same source is limited on the protected port: the limiter is on.
    let protected = Counting::start(&setup.topo.rx, PROTECTED);
    send_burst(&setup.topo.tx, src, PROTECTED, 200);
    let got_protected = protected.finish(&setup.topo.tx, PROTECTED);
    let passed = got_protected.get(&src).copied().unwrap_or(0);
    assert!(
        (BURST..60).contains(&passed),
        "burst of 200 let {passed} through"
    );
    // IPv6 neighbour discovery and the like are unprotected too, hence at least.
    assert!(setup.stats().packets(Reason::PassUnprotected) >= sent[&src].count);
    assert_eq!(setup.stats().packets(Reason::DropRateLimited), 200 - passed);
}

#[test]
fn refuses_an_interface_that_does_not_exist() {
    let Some((_serial, mut setup)) = Setup::new("refuses_an_interface_that_does_not_exist", "")
    else {
        return;
    };
    setup.topo.rx_if = "asx-nope0".into();
    setup.write_config("");
    let failure = start_expecting_failure(Some(&setup.topo.rx.name), &setup.config);
    assert_eq!(
        failure.code,
        Some(64),
        "a config error, as check-config says: {failure}"
    );
    assert!(
        failure.log.contains("interface `asx-nope0` does not exist")
            && failure.log.contains("fastpath.interfaces[0]"),
        "{failure}"
    );
    // Nothing was touched.
    assert!(!setup.pins.path.exists(), "{failure}");
}

#[test]
fn refuses_an_interface_held_by_another_xdp_program() {
    let Some((_serial, setup)) = Setup::new("refuses_an_interface_held_by_another_xdp_program", "")
    else {
        return;
    };
    let _owner = setup.daemon();
    // A second shield with its own pin directory (so not the owner of the link) on the same NIC.
    let other_pins = PinDir::new();
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(
            &setup.pins.path.display().to_string(),
            &other_pins.path.display().to_string(),
        )
        .replace("/run\"", "/run2\"");
    let other_config = setup.dir.path().join("other.toml");
    std::fs::write(&other_config, text).unwrap();
    let failure = start_expecting_failure(Some(&setup.topo.rx.name), &other_config);
    assert_eq!(failure.code, Some(1), "{failure}");
    assert!(
        failure.log.contains("already has an XDP program"),
        "{failure}"
    );
}

#[test]
fn refuses_to_start_without_bpf_privileges() {
    let Some((_serial, setup)) = Setup::new("refuses_to_start_without_bpf_privileges", "") else {
        return;
    };
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(setup.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&setup.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(support::daemon::binary())
        .args(["run", "--config"])
        .arg(&setup.config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("BPF is not permitted"), "{stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
}

#[test]
fn invalid_config_is_refused_with_file_line_and_key() {
    let Some((_serial, setup)) = Setup::new("invalid_config_is_refused_with_file_line_and_key", "")
    else {
        return;
    };
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("burst = 20", "burst = 0");
    std::fs::write(&setup.config, &text).unwrap();
    let line = text.lines().position(|l| l == "burst = 0").unwrap() + 1;
    let failure = start_expecting_failure(Some(&setup.topo.rx.name), &setup.config);
    assert_eq!(failure.code, Some(64), "{failure}");
    let expected = format!(
        "{}:{line}:9: key `fastpath.limiter.burst`",
        setup.config.display()
    );
    assert!(
        failure.log.contains(&expected),
        "want {expected}: {failure}"
    );
    // Nothing was attached.
    assert!(!setup.pins.layout().join("links").exists());
}

#[test]
fn falls_back_to_generic_mode_and_honours_a_forced_mode() {
    let Some((_serial, mut setup)) =
        Setup::new("falls_back_to_generic_mode_and_honours_a_forced_mode", "")
    else {
        return;
    };
    // Loopback has no driver-mode XDP: `auto` must fall back to generic mode, and say so.
    let veth = std::mem::replace(&mut setup.topo.rx_if, "lo".into());
    setup.write_config("");
    let mut daemon = setup.daemon();
    daemon
        .wait_for(
            "driver mode unavailable: falling back to generic mode",
            Duration::from_secs(1),
        )
        .unwrap();
    let report = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    assert_eq!(report["interfaces"][0]["name"], "lo");
    assert_eq!(report["interfaces"][0]["mode"], "generic");
    daemon.stop();

    // A forced mode is used as is, even where driver mode would work.
    setup.topo.rx_if = veth;
    setup.write_config("mode = \"generic\"");
    let _daemon = setup.daemon();
    let report = cli_json(&["stats", "--json", "--config", &setup.config_arg()]);
    assert_eq!(report["interfaces"][0]["mode"], "generic");
    let counting = Counting::start(&setup.topo.rx, PROTECTED);
    let src = IpAddr::V4(Ipv4Addr::new(10, 201, 1, 11));
    setup.topo.add_sources(&[src]);
    send_burst(&setup.topo.tx, src, PROTECTED, 100);
    let passed = counting
        .finish(&setup.topo.tx, PROTECTED)
        .get(&src)
        .copied()
        .unwrap_or(0);
    assert!(
        (BURST..40).contains(&passed),
        "generic mode limits too: {passed} of 100 passed"
    );
}
