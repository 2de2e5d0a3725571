//! The CrowdSec bouncer end to end: a real CrowdSec Local API (Debian's `crowdsec`, with its
//! own config and database) in the receiving namespace, and the daemon with XDP in driver mode
//! on the veth, pulling its decision stream.
//!
//! A decision made before the daemon starts is applied at start; `cscli decisions add --ip`
//! and `--range` drop the source at the NIC; `decisions delete` lifts it; a decision for an
//! allow-listed source is refused and logged; a ban of another origin (an operator's) outlives
//! the CrowdSec decision on the same address; the LAPI stopped and restarted changes nothing
//! applied, and a decision that ends while it is down is lifted on time; a decision deleted
//! while the daemon was down is lifted when it starts again.
//!
//! With `report = true`, an escalation ban appears in `cscli decisions list`, and the copy
//! the bouncer pulls back leaves the ban as it is.

use crate::support;

use std::{
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::PermissionsExt as _,
    sync::Arc,
    time::{Duration, Instant},
};

use support::{
    admin::value,
    crowdsec_lapi::{crowdsec_available, Lapi},
    daemon::{cli, cli_json},
    fastpath_setup::{Setup, ALLOWED_SRC, UNPROTECTED},
    fleet_hosts::{self, assert_dropped, host, metrics, request, start, GOOD},
    fleet_net::FleetNet,
    https::TestPki,
    privileged,
};

const ONE: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 1);
const OPERATOR: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 2);
const SHORT: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 3);
/// Inside the range decision.
const IN_RANGE: Ipv4Addr = Ipv4Addr::new(10, 201, 7, 5);
const RANGE: &str = "10.201.7.0/24";
/// How long a pulled decision may take to reach the map here (two poll intervals of 250 ms,
/// with room for a loaded CI machine).
const PULLED: Duration = Duration::from_secs(10);
/// The credential stuffer of the reporting test, and the failures that ban it.
const STUFFER: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 99);
const THRESHOLD: u32 = 4;

/// Waits until `check` holds, polling every 50 ms, up to `limit`.
fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bans(setup: &Setup) -> serde_json::Value {
    cli_json(&["bans", "--json", "--config", &setup.config_arg()])
}

fn banned(setup: &Setup, target: &str) -> Option<serde_json::Value> {
    bans(setup)
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["target"] == target)
        .cloned()
}

fn dropped(setup: &Setup, src: Ipv4Addr) -> bool {
    setup.delivered(IpAddr::V4(src), UNPROTECTED, 10) == 0
}

#[test]
fn crowdsec_decisions_are_dropped_at_the_nic() {
    let test = "crowdsec_decisions_are_dropped_at_the_nic";
    if !crowdsec_available(test) {
        return;
    }
    let Some((_serial, mut setup)) = Setup::new(test, "") else {
        return;
    };
    setup.topo.add_sources(&[
        IpAddr::V4(ONE),
        IpAddr::V4(OPERATOR),
        IpAddr::V4(SHORT),
        IpAddr::V4(IN_RANGE),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let mut lapi = Lapi::start(dir.path(), &setup.topo.rx);
    let key = lapi.bouncer_key_file(dir.path(), "api-shield");
    setup.write_config(&format!(
        "mode = \"driver\"\n\n[crowdsec]\nlapi_url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"250ms\"\n",
        lapi.url(),
        key.display()
    ));

    // Made before the daemon starts: applied by the startup pull.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        &ONE.to_string(),
        "--duration",
        "2m",
    ]);
    let mut daemon = setup.daemon();
    daemon
        .wait_for("crowdsec: decisions pulled", PULLED)
        .unwrap();
    let first = daemon
        .log
        .iter()
        .find(|l| l.contains("crowdsec: decisions pulled"))
        .unwrap()
        .clone();
    assert!(
        first.contains("\"startup\":true") && first.contains("\"applied\":1"),
        "{first}"
    );
    assert!(dropped(&setup, ONE), "{ONE} passes");
    let ban = banned(&setup, &format!("{ONE}/32")).expect("the decision's ban");
    assert_eq!(ban["origin"], "feed:crowdsec", "{ban}");
    assert!(
        ban["reason"]
            .as_str()
            .unwrap()
            .starts_with("crowdsec:manual"),
        "{ban}"
    );
    let left = ban["remaining_secs"].as_u64().unwrap();
    assert!(
        (60..=120).contains(&left),
        "the decision's time left: {ban}"
    );
    let (_, table, _) = cli(&["bans", "--config", &setup.config_arg()]);
    assert!(table.contains("feed:crowdsec"), "{table}");

    // A range, added while the daemon runs.
    lapi.cscli(&["decisions", "add", "--range", RANGE, "--duration", "2m"]);
    eventually("the range is banned", PULLED, || {
        banned(&setup, RANGE).is_some()
    });
    daemon
        .wait_for("source banned at the NIC by CrowdSec", PULLED)
        .unwrap();
    assert!(dropped(&setup, IN_RANGE), "{IN_RANGE} passes");

    // Deleted: lifted.
    lapi.cscli(&["decisions", "delete", "--ip", &ONE.to_string()]);
    eventually("the address is lifted", PULLED, || {
        banned(&setup, &format!("{ONE}/32")).is_none()
    });
    daemon.wait_for("ban lifted by CrowdSec", PULLED).unwrap();
    assert!(!dropped(&setup, ONE), "{ONE} is still dropped");

    // The allow list wins: refused and logged, never applied.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        &ALLOWED_SRC.to_string(),
        "--duration",
        "2m",
    ]);
    daemon
        .wait_for("crowdsec: decision refused", PULLED)
        .unwrap();
    assert!(banned(&setup, &format!("{ALLOWED_SRC}/32")).is_none());

    // An operator's longer ban is neither replaced nor lifted by CrowdSec.
    let (code, _, stderr) = cli(&[
        "ban",
        &OPERATOR.to_string(),
        "--ttl",
        "10m",
        "--config",
        &setup.config_arg(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        &OPERATOR.to_string(),
        "--duration",
        "1m",
    ]);
    lapi.cscli(&["decisions", "delete", "--ip", &OPERATOR.to_string()]);
    // A later decision's arrival shows both pulls were applied.
    lapi.cscli(&[
        "decisions",
        "add",
        "--ip",
        &SHORT.to_string(),
        "--duration",
        "5s",
    ]);
    eventually("the short decision is banned", PULLED, || {
        banned(&setup, &format!("{SHORT}/32")).is_some()
    });
    let ban = banned(&setup, &format!("{OPERATOR}/32")).expect("the operator's ban stays");
    assert!(ban.get("origin").is_none(), "{ban}");

    // The LAPI stopped: nothing applied is lifted early; the short decision still ends on
    // time, by the kernel's own expiry.
    lapi.stop();
    daemon
        .wait_for("crowdsec: cannot pull decisions", PULLED)
        .unwrap();
    assert!(
        dropped(&setup, IN_RANGE),
        "the range was lifted with the LAPI gone"
    );
    eventually("the short decision ends", Duration::from_secs(15), || {
        !dropped(&setup, SHORT)
    });
    // Back: pulls resume, and the range is still applied, once.
    lapi.resume();
    daemon
        .wait_for_count("crowdsec: decisions pulled", 2, PULLED)
        .unwrap();
    assert!(
        dropped(&setup, IN_RANGE),
        "the range was lifted after the LAPI came back"
    );
    let ranges = bans(&setup)
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["target"] == RANGE)
        .count();
    assert_eq!(ranges, 1);
    let announced = daemon
        .log
        .iter()
        .filter(|l| l.contains("source banned at the NIC by CrowdSec") && l.contains(RANGE))
        .count();
    assert_eq!(
        announced, 1,
        "the range was applied again after the LAPI came back"
    );

    let samples = setup.topo.rx.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(support::admin::scrape("127.0.0.1:9901".parse().unwrap()))
    });
    let samples = samples.join().unwrap();
    assert!(
        value(
            &samples,
            "api_shield_crowdsec_decisions_total{outcome=applied}"
        ) >= 3.0
    );
    assert!(
        value(
            &samples,
            "api_shield_crowdsec_decisions_total{outcome=lifted}"
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "api_shield_crowdsec_decisions_total{outcome=refused}"
        ) >= 1.0
    );
    assert_eq!(value(&samples, "api_shield_crowdsec_connected{}"), 1.0);
    assert!(
        value(
            &samples,
            "api_shield_crowdsec_last_pull_timestamp_seconds{}"
        ) > 1.7e9
    );

    // Deleted while the daemon is down: lifted when it starts again (its map kept the ban).
    drop(daemon);
    assert!(
        banned(&setup, RANGE).is_some(),
        "the pinned map keeps the ban"
    );
    lapi.cscli(&["decisions", "delete", "--range", RANGE]);
    let mut daemon = setup.daemon();
    daemon
        .wait_for("crowdsec: decisions pulled", PULLED)
        .unwrap();
    eventually("the range deleted meanwhile is lifted", PULLED, || {
        banned(&setup, RANGE).is_none()
    });
    assert!(!dropped(&setup, IN_RANGE), "{IN_RANGE} is still dropped");
}

/// With `report = true`, an escalation ban made here appears in `cscli decisions list`, so
/// every other bouncer of that LAPI enforces it; the bouncer pulls it back without replacing
/// the ban it copies.
#[test]
fn escalation_bans_are_reported_to_crowdsec() {
    let test = "escalation_bans_are_reported_to_crowdsec";
    if !privileged::can_run(test, true) || !crowdsec_available(test) {
        return;
    }
    let net = FleetNet::new(1);
    for src in [GOOD, STUFFER] {
        net.add_source(src);
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let ca = Arc::new(pki.ca.clone());
    let lapi_dir = dir.path().join("lapi");
    std::fs::create_dir(&lapi_dir).unwrap();
    let lapi = Lapi::start(&lapi_dir, &net.hosts[0]);
    let key = lapi.bouncer_key_file(dir.path(), "api-shield");
    let password = dir.path().join("machine.password");
    std::fs::write(&password, "machine-secret-7").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    lapi.cscli(&[
        "machines",
        "add",
        "api-shield",
        "--password",
        "machine-secret-7",
        "-f",
        "/dev/null",
    ]);
    let mut setup = fleet_hosts::Setup::new("", THRESHOLD, "", 0);
    setup.fleet_table = false;
    setup.fleet_extra = format!(
        "[crowdsec]\nlapi_url = \"{}\"\napi_key_file = \"{}\"\npoll_interval = \"250ms\"\nreport = true\nmachine_id = \"api-shield\"\nmachine_password_file = \"{}\"\n",
        lapi.url(),
        key.display(),
        password.display()
    );
    let mut host = host(&net, 0, dir.path(), &pki, &setup);
    start(&net, 0, &mut host, &ca);
    for _ in 0..THRESHOLD {
        assert_eq!(request(&net, 0, STUFFER, "wrong-key", &ca).unwrap(), 401);
    }
    host.daemon()
        .wait_for("source banned at the NIC by escalation", PULLED)
        .unwrap();
    eventually("the ban is in cscli decisions list", PULLED, || {
        lapi.cscli(&["decisions", "list", "-o", "json"])
            .contains(&STUFFER.to_string())
    });
    let listed = lapi.cscli(&["decisions", "list", "-o", "json"]);
    assert!(
        listed.contains("api-shield/escalation:auth-failures"),
        "{listed}"
    );
    // The bouncer pulls the reported decision back; the escalation ban stays as it is.
    let samples = metrics(&net, 0);
    assert!(value(&samples, "api_shield_crowdsec_reports_total{result=sent}") >= 1.0);
    eventually("the reported decision is pulled back", PULLED, || {
        metrics(&net, 0)
            .get("api_shield_crowdsec_decisions_total{outcome=unchanged}")
            .is_some_and(|n| *n >= 1.0)
    });
    let bans = host.bans();
    assert_eq!(bans.as_array().unwrap().len(), 1, "{bans}");
    assert_eq!(bans[0]["reason"], "escalation:auth-failures", "{bans}");
    assert!(bans[0].get("origin").is_none(), "{bans}");
    assert_dropped(&net, 0, &host, STUFFER, &ca);
}
