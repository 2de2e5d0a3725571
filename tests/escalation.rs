//! The loop closed, end to end in network namespaces: a client that keeps failing auth is
//! banned after the threshold and its next packets die at the NIC (its TCP connect times out,
//! the drop counter rises) while another client keeps being served; the ban expires on time;
//! `api-shield unban` (through the daemon's control socket) restores it at once. Along the way `/metrics` holds the kernel counters,
//! every metric the shipped dashboard and alert rules use, and passes `promtool check metrics`.

use crate::support;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use api_shield::fastpath::PinnedMaps;
use api_shield_common::Reason;
use support::{
    daemon::{cli, cli_json, ChildGuard, Daemon},
    https::{client_config, get, status_from, TestPki, Version},
    netns::{Netns, Topology, RX_V4},
    privileged::{self, PinDir},
};

const BAD: Ipv4Addr = Ipv4Addr::new(10, 201, 5, 1);
const GOOD: Ipv4Addr = Ipv4Addr::new(10, 201, 5, 2);
const PORT: u16 = 8443;
const BAN_SECS: u64 = 4;
const THRESHOLD: u32 = 5;

/// One HTTPS request from `src` inside `ns` with API key `key`: its status, or the error
/// (a connect that times out when the source is dropped at the NIC).
fn request(
    ns: &Netns,
    src: Ipv4Addr,
    key: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<u16> {
    status_from(
        ns,
        src.into(),
        SocketAddr::new(RX_V4.into(), PORT),
        "/api/v1/users/7",
        &[("x-api-key", key)],
        ca,
    )
}

/// The admin listener's `/metrics`, read inside the daemon's namespace.
fn scrape(ns: &Netns) -> String {
    ns.run(|| {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect("127.0.0.1:9901").unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_owned()
    })
    .join()
    .unwrap()
}

fn banned_drops(pins: &PinDir) -> u64 {
    PinnedMaps::open(&pins.layout())
        .unwrap()
        .stats()
        .unwrap()
        .packets(Reason::DropBanned)
}

/// `promtool`, or a loud skip (a failure when privileged tests are required: CI installs it).
fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !privileged::required(),
            "promtool (Debian package prometheus) is not installed"
        );
        eprintln!(
            "skipping the promtool checks: promtool (Debian package prometheus) is not installed"
        );
        return None;
    }
    Some("promtool")
}

/// Writes the daemon's config into `dir`: the fast path on the topology's receiver, the API-key
/// route in front of the demo API, and `escalation` as its `[escalation]` section.
fn write_config(
    topo: &Topology,
    pins: &PinDir,
    dir: &Path,
    pki: &TestPki,
    escalation: &str,
) -> std::path::PathBuf {
    let good_hash = {
        let digest = ring::digest::digest(&ring::digest::SHA256, b"good-key");
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let config = dir.join("api-shield.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[fastpath]
interfaces = ["{rx_if}"]
pin_dir = "{pins}"
runtime_dir = "{runtime}"
[fastpath.limiter.protect]
tcp = [{PORT}]

[[listeners]]
bind = "{RX_V4}:{PORT}"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "demo"
url = "http://127.0.0.1:9000"

[[routes]]
name = "secure"
path = "/api/v1/users/*"
upstream = "demo"
[routes.auth]
api_key = true
[routes.deprecation]
deprecated = "2025-01-01T00:00:00Z"

[api_keys]
keys = [{{ id = "good", sha256 = "{good_hash}" }}]

[[issuers]]
name = "unreachable-jwks"
issuer = "https://issuer.test"
audiences = ["api"]
algorithms = ["RS256"]
jwks_url = "http://127.0.0.1:1/jwks.json"

{escalation}
"#,
            rx_if = topo.rx_if,
            pins = pins.path.display(),
            runtime = dir.join("run").display(),
            cert = pki.cert.display(),
            key = pki.key.display(),
        ),
    )
    .unwrap();
    config
}

/// A test's hosts and daemon config: the topology with `sources` on the sender, pinned maps,
/// the certificates, and the config with `escalation` as its `[escalation]` section.
struct Rig {
    topo: Topology,
    pins: PinDir,
    _dir: tempfile::TempDir,
    ca: Arc<rustls::pki_types::CertificateDer<'static>>,
    config: std::path::PathBuf,
}

impl Rig {
    fn new(sources: &[Ipv4Addr], escalation: &str) -> Rig {
        let topo = Topology::new();
        let sources: Vec<std::net::IpAddr> = sources.iter().map(|&s| s.into()).collect();
        topo.add_sources(&sources);
        let pins = PinDir::new();
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        let config = write_config(&topo, &pins, dir.path(), &pki, escalation);
        Rig {
            topo,
            pins,
            _dir: dir,
            ca: Arc::new(pki.ca.clone()),
            config,
        }
    }
}

/// The demo API in the receiver, and the daemon in front of it once `client` is served.
fn start(
    topo: &Topology,
    config: &Path,
    client: Ipv4Addr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> (ChildGuard, Daemon) {
    let binary = support::daemon::binary();
    let demo = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &topo.rx.name])
            .arg(&binary)
            .args(["demo-api", "--bind", "127.0.0.1:9000"]),
    );
    let daemon = Daemon::start(Some(&topo.rx.name), config).unwrap_or_else(|e| panic!("{e}"));
    // The demo API comes up on its own time: wait until the client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while request(&topo.tx, client, "good-key", ca).ok() != Some(200) {
        assert!(Instant::now() < deadline, "the client is never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    (demo, daemon)
}

#[test]
fn repeated_auth_failures_ban_at_the_nic_until_expiry_or_unban() {
    if !privileged::can_run(
        "repeated_auth_failures_ban_at_the_nic_until_expiry_or_unban",
        true,
    ) {
        return;
    }
    let Rig {
        topo,
        pins,
        _dir,
        ca,
        config,
    } = Rig::new(
        &[BAD, GOOD],
        &format!(
            r#"[escalation]
[[escalation.rules]]
name = "auth-failures"
signal = "auth_failure"
threshold = {THRESHOLD}
window = "1m"
ban = "{BAN_SECS}s""#
        ),
    );
    let (_demo, mut daemon) = start(&topo, &config, GOOD, &ca);

    // Below the threshold: refused at L7, still reachable.
    for _ in 0..THRESHOLD - 1 {
        assert_eq!(request(&topo.tx, BAD, "wrong-key", &ca).unwrap(), 401);
    }
    let drops_before = banned_drops(&pins);
    // The threshold: this refusal bans it.
    assert_eq!(request(&topo.tx, BAD, "wrong-key", &ca).unwrap(), 401);
    let banned_at = Instant::now();
    daemon
        .wait_for(
            "source banned at the NIC by escalation",
            Duration::from_secs(5),
        )
        .unwrap();
    let bans = cli_json(&["bans", "--json", "--config", &config.display().to_string()]);
    assert_eq!(bans[0]["target"], format!("{BAD}/32"), "{bans}");
    assert_eq!(bans[0]["reason"], "escalation:auth-failures");
    // Its next packets die at the NIC: the connect times out, and the counter rises.
    let error = request(&topo.tx, BAD, "good-key", &ca).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{error}");
    assert!(
        banned_drops(&pins) > drops_before,
        "no banned drops counted"
    );
    // The other client is served all along.
    assert_eq!(request(&topo.tx, GOOD, "good-key", &ca).unwrap(), 200);

    // Metrics: kernel counters, the escalation, and every name the dashboard and rules use.
    // The drop-start event of the banned source reaches the daemon through the ring buffer.
    daemon
        .wait_for("source is being dropped", Duration::from_secs(5))
        .unwrap();
    let text = scrape(&topo.rx);
    let samples = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| {
        samples
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    assert!(
        find(
            "api_shield_xdp_packets_total",
            &[("action", "drop"), ("reason", "banned")]
        ) >= 1.0
    );
    assert!(
        find(
            "api_shield_xdp_bytes_total",
            &[("action", "drop"), ("reason", "banned")]
        ) >= 1.0
    );
    assert!(
        find(
            "api_shield_xdp_packets_total",
            &[("action", "pass"), ("reason", "within_limit")]
        ) >= 1.0
    );
    assert_eq!(find("api_shield_xdp_active_bans", &[]), 1.0);
    assert!(find("api_shield_xdp_drop_events_total", &[]) >= 1.0);
    assert!(
        find(
            "api_shield_jwks_fetches_total",
            &[("issuer", "unreachable-jwks"), ("result", "failure")]
        ) >= 1.0
    );
    assert_eq!(
        find(
            "api_shield_jwks_fetches_total",
            &[("issuer", "unreachable-jwks"), ("result", "success")]
        ),
        0.0
    );
    assert_eq!(
        find(
            "api_shield_escalation_bans_total",
            &[("rule", "auth-failures")]
        ),
        1.0
    );
    assert_eq!(
        find(
            "api_shield_denials_total",
            &[("route", "secure"), ("reason", "invalid-api-key")]
        ),
        5.0
    );
    let names: std::collections::HashSet<&str> =
        samples.samples.iter().map(|s| s.metric.as_str()).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "config/grafana-dashboard.json",
        "config/prometheus-alerts.yml",
    ] {
        let shipped = std::fs::read_to_string(root.join(file)).unwrap();
        for (start, _) in shipped.match_indices("api_shield_") {
            let name: String = shipped[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // The parser files histogram series under the histogram's name.
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            assert!(
                names.contains(name.as_str()) || names.contains(base),
                "{file} uses {name}, which /metrics does not serve"
            );
        }
    }
    if let Some(promtool) = promtool() {
        use std::io::Write;
        let mut check = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        check
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let rules = Command::new(promtool)
            .args(["check", "rules"])
            .arg(root.join("config/prometheus-alerts.yml"))
            .output()
            .unwrap();
        assert!(
            rules.status.success(),
            "{}",
            String::from_utf8_lossy(&rules.stdout)
        );
    }

    // The ban expires on time: not before its TTL, and within a second of it.
    let deadline = banned_at + Duration::from_secs(BAN_SECS + 3);
    loop {
        match request(&topo.tx, BAD, "good-key", &ca) {
            Ok(status) => {
                assert_eq!(status, 200);
                break;
            }
            Err(_) => assert!(Instant::now() < deadline, "the ban did not expire"),
        }
    }
    let served_after = banned_at.elapsed();
    assert!(
        served_after >= Duration::from_secs(BAN_SECS) - Duration::from_millis(200),
        "served again after {served_after:?}, before the {BAN_SECS}s ban ended"
    );

    // Banned again, then lifted by hand at once.
    for _ in 0..THRESHOLD {
        assert_eq!(request(&topo.tx, BAD, "wrong-key", &ca).unwrap(), 401);
    }
    daemon
        .wait_for_count(
            "source banned at the NIC by escalation",
            2,
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(request(&topo.tx, BAD, "good-key", &ca).is_err());
    let (code, out, err) = cli(&[
        "unban",
        &BAD.to_string(),
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // With the daemon running, the CLI went through its control socket (an audit line).
    daemon
        .wait_for("ban lifted by an operator", Duration::from_secs(5))
        .unwrap();
    assert_eq!(request(&topo.tx, BAD, "good-key", &ca).unwrap(), 200);

    // An operator's ban closes the connections the source already has open: a keep-alive
    // connection of GOOD, served once, ends as soon as GOOD is banned (its idle timeout is
    // a minute), so the stop below has nothing left to drain.
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let held = {
        let config = client_config(&ca, Version::H1);
        topo.tx.run(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind(SocketAddr::new(GOOD.into(), 0)).unwrap();
                    let tcp = socket
                        .connect(SocketAddr::new(RX_V4.into(), PORT))
                        .await
                        .unwrap();
                    let tls = tokio_rustls::TlsConnector::from(config)
                        .connect(
                            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                            tcp,
                        )
                        .await
                        .unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                            .await
                            .unwrap();
                    let conn = tokio::spawn(conn);
                    let mut request = get("GET", "/api/v1/users/7");
                    request
                        .headers_mut()
                        .insert("x-api-key", "good-key".parse().unwrap());
                    let response = sender.send_request(request).await.unwrap();
                    let status = response.status().as_u16();
                    http_body_util::BodyExt::collect(response.into_body())
                        .await
                        .unwrap();
                    opened_tx.send(status).unwrap();
                    // Ends when the shield closes the connection.
                    tokio::time::timeout(Duration::from_secs(20), conn)
                        .await
                        .is_ok()
                })
        })
    };
    assert_eq!(opened.recv().unwrap(), 200);
    let (code, out, err) = cli(&[
        "ban",
        &GOOD.to_string(),
        "--ttl",
        "1m",
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        held.join().unwrap(),
        "the banned client's keep-alive connection stayed open"
    );
    daemon.stop();
    assert!(
        daemon.log.iter().any(|l| l.contains("connections drained")),
        "{:?}",
        daemon.log
    );
}

/// `escalation.max_active_bans` caps the bans escalation keeps in force: past it, an offender
/// is refused a ban (an audit line says so) and stays reachable, and once an operator lifts
/// one, escalation bans again.
#[test]
fn escalation_stops_at_max_active_bans_until_one_is_lifted() {
    if !privileged::can_run(
        "escalation_stops_at_max_active_bans_until_one_is_lifted",
        true,
    ) {
        return;
    }
    const FIRST: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 1);
    const SECOND: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 2);
    const THIRD: Ipv4Addr = Ipv4Addr::new(10, 201, 6, 3);
    let Rig {
        topo,
        pins: _pins,
        _dir,
        ca,
        config,
    } = Rig::new(
        &[FIRST, SECOND, THIRD, GOOD],
        r#"[escalation]
max_active_bans = 2
[[escalation.rules]]
name = "auth-failures"
signal = "auth_failure"
threshold = 2
window = "1m"
ban = "10m""#,
    );
    let (_demo, mut daemon) = start(&topo, &config, GOOD, &ca);
    let config_arg = config.display().to_string();
    let banned = || -> Vec<String> {
        let bans = cli_json(&["bans", "--json", "--config", &config_arg]);
        bans.as_array()
            .unwrap()
            .iter()
            .map(|ban| ban["target"].as_str().unwrap().to_owned())
            .collect()
    };
    let offend = |source: Ipv4Addr| {
        for _ in 0..2 {
            assert_eq!(request(&topo.tx, source, "wrong-key", &ca).unwrap(), 401);
        }
    };

    offend(FIRST);
    offend(SECOND);
    daemon
        .wait_for_count(
            "source banned at the NIC by escalation",
            2,
            Duration::from_secs(5),
        )
        .unwrap();
    // The cap is reached: the third offender is refused a ban and stays reachable.
    offend(THIRD);
    daemon
        .wait_for("escalation.max_active_bans reached", Duration::from_secs(5))
        .unwrap();
    let mut in_force = banned();
    in_force.sort();
    assert_eq!(
        in_force,
        [format!("{FIRST}/32"), format!("{SECOND}/32")],
        "only two bans"
    );
    assert_eq!(request(&topo.tx, THIRD, "good-key", &ca).unwrap(), 200);

    // An operator lifts one: escalation bans the third offender when it offends again (the
    // count of bans in force is read again within a second or so of the lift).
    let (code, out, err) = cli(&["unban", &FIRST.to_string(), "--config", &config_arg]);
    assert_eq!(code, 0, "{out}{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !banned().contains(&format!("{THIRD}/32")) {
        assert!(
            Instant::now() < deadline,
            "the third offender is never banned after a ban was lifted"
        );
        offend(THIRD);
    }
    assert_eq!(banned().len(), 2, "still no more than two bans");
}
