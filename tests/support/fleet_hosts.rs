//! The hosts of the fleet tests: each a daemon with XDP on its link, the demo API behind it, a
//! config naming the test's Redis; and what the tests ask of them (requests from the client
//! namespace, drops counted at the NIC, `bans`, `status` and `/metrics`).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use api_shield::fastpath::PinnedMaps;
use api_shield_common::Reason;

use super::{
    daemon::{cli_json, ChildGuard, Daemon},
    fleet_net::FleetNet,
    https::{status_from, TestPki},
    privileged::PinDir,
};

/// The legitimate client, served throughout.
pub const GOOD: Ipv4Addr = Ipv4Addr::new(10, 211, 0, 77);
/// The hosts' HTTPS port.
pub const PORT: u16 = 8443;
/// The test's Redis port.
pub const REDIS_PORT: u16 = 6390;
/// The hosts' names in the fleet.
pub const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
/// How long a fleet change may take to show on another host here (the design promises well
/// under a second; the bound leaves room for a loaded CI machine).
pub const SPREAD: Duration = Duration::from_secs(5);

/// One host of the fleet: its config, pins and (once started) daemon.
pub struct Host {
    // Dropped first: the daemon stops before its pins and upstream go.
    pub daemon: Option<Daemon>,
    pub config: PathBuf,
    pub pins: PinDir,
    _demo: ChildGuard,
}

impl Host {
    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("started")
    }

    pub fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    pub fn banned_drops(&self) -> u64 {
        PinnedMaps::open(&self.pins.layout())
            .unwrap()
            .stats()
            .unwrap()
            .packets(Reason::DropBanned)
    }

    pub fn bans(&self) -> serde_json::Value {
        cli_json(&["bans", "--json", "--config", &self.config_arg()])
    }
}

/// What differs between the fleet tests' configs.
pub struct Setup<'a> {
    /// The fleet's name (unique to the test).
    pub fleet: &'a str,
    /// The escalation rule's threshold of auth failures.
    pub threshold: u32,
    /// Routes tried before the API-key route (`/api/v1/users/*`).
    pub routes: &'a str,
    /// The port of the Redis (or cluster node) the hosts are given.
    pub redis_port: u16,
    /// `redis` or `rediss`.
    pub scheme: &'a str,
    /// More `[fleet]` lines (credentials, CA), or more tables without a fleet.
    pub fleet_extra: String,
    /// Whether the host is in a fleet (a lone host with the same routes and escalation
    /// otherwise).
    pub fleet_table: bool,
}

impl<'a> Setup<'a> {
    /// A plain Redis on `redis_port`.
    pub fn new(fleet: &'a str, threshold: u32, routes: &'a str, redis_port: u16) -> Setup<'a> {
        Setup {
            fleet,
            threshold,
            routes,
            redis_port,
            scheme: "redis",
            fleet_extra: String::new(),
            fleet_table: true,
        }
    }
}

fn config(
    net: &FleetNet,
    k: usize,
    dir: &Path,
    pki: &TestPki,
    pins: &PinDir,
    setup: &Setup<'_>,
) -> PathBuf {
    let good_hash: String = ring::digest::digest(&ring::digest::SHA256, b"good-key")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("{}.toml", HOSTS[k]));
    std::fs::write(
        &path,
        format!(
            r#"
[fastpath]
interfaces = ["{interface}"]
mode = "driver"
pin_dir = "{pins}"
runtime_dir = "{runtime}"
[fastpath.limiter.protect]
tcp = [{PORT}]

[[listeners]]
bind = "{addr}:{PORT}"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "demo"
url = "http://127.0.0.1:9000"

{routes}
[[routes]]
name = "secure"
path = "/api/v1/users/*"
upstream = "demo"
[routes.auth]
api_key = true

[api_keys]
keys = [{{ id = "good", sha256 = "{good_hash}" }}]

[escalation]
[[escalation.rules]]
name = "auth-failures"
signal = "auth_failure"
threshold = {threshold}
window = "1m"
ban = "10m"
{fleet}
{fleet_extra}
"#,
            interface = net.host_ifs[k],
            pins = pins.path.display(),
            runtime = dir.join(format!("run-{k}")).display(),
            addr = net.host_addr(k),
            cert = pki.cert.display(),
            key = pki.key.display(),
            threshold = setup.threshold,
            routes = setup.routes,
            fleet = fleet_table(net, k, setup),
            fleet_extra = setup.fleet_extra,
        ),
    )
    .unwrap();
    path
}

/// The `[fleet]` table of host `k`, if it is in one.
fn fleet_table(net: &FleetNet, k: usize, setup: &Setup<'_>) -> String {
    if !setup.fleet_table {
        return String::new();
    }
    format!(
        "[fleet]\nredis = \"{}://{}:{}\"\nname = \"{}\"\nhost = \"{}\"\ntimeout = \"200ms\"",
        setup.scheme,
        net.redis_addr(k),
        setup.redis_port,
        setup.fleet,
        HOSTS[k]
    )
}

/// A host's demo API and config (the daemon is started apart).
pub fn host(net: &FleetNet, k: usize, dir: &Path, pki: &TestPki, setup: &Setup<'_>) -> Host {
    let pins = PinDir::new();
    let config = config(net, k, dir, pki, &pins, setup);
    let demo = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &net.hosts[k].name])
            .arg(super::daemon::binary())
            .args(["demo-api", "--bind", "127.0.0.1:9000"]),
    );
    Host {
        config,
        pins,
        daemon: None,
        _demo: demo,
    }
}

pub fn start(
    net: &FleetNet,
    k: usize,
    host: &mut Host,
    ca: &rustls::pki_types::CertificateDer<'static>,
) {
    let daemon =
        Daemon::start(Some(&net.hosts[k].name), &host.config).unwrap_or_else(|e| panic!("{e}"));
    host.daemon = Some(daemon);
    // The demo API comes up on its own time: wait until the good client is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    while request(net, k, GOOD, "good-key", ca).ok() != Some(200) {
        assert!(Instant::now() < deadline, "{} never serves", HOSTS[k]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTPS request from `src` to host `k`: its status, or the error (a connect that times
/// out when the source is dropped at the NIC).
pub fn request(
    net: &FleetNet,
    k: usize,
    src: Ipv4Addr,
    key: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<u16> {
    request_to(net, k, src, "/api/v1/users/7", key, ca)
}

/// The same, for `target`.
pub fn request_to(
    net: &FleetNet,
    k: usize,
    src: Ipv4Addr,
    target: &str,
    key: &str,
    ca: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<u16> {
    status_from(
        &net.client,
        src.into(),
        SocketAddr::new(net.host_addr(k).into(), PORT),
        target,
        &[("x-api-key", key)],
        ca,
    )
}

pub fn assert_dropped(
    net: &FleetNet,
    k: usize,
    host: &Host,
    src: Ipv4Addr,
    ca: &rustls::pki_types::CertificateDer<'static>,
) {
    let before = host.banned_drops();
    let error = request(net, k, src, "good-key", ca).unwrap_err();
    assert_eq!(
        error.kind(),
        std::io::ErrorKind::TimedOut,
        "{}: {error}",
        HOSTS[k]
    );
    assert!(
        host.banned_drops() > before,
        "{}: no banned drops counted",
        HOSTS[k]
    );
}

/// Host `k`'s `/metrics`, read inside its namespace.
pub fn metrics(net: &FleetNet, k: usize) -> std::collections::HashMap<String, f64> {
    net.hosts[k]
        .run(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(super::admin::scrape("127.0.0.1:9901".parse().unwrap()))
        })
        .join()
        .unwrap()
}

/// The status's fleet section.
pub fn fleet_status(host: &Host) -> serde_json::Value {
    cli_json(&["status", "--json", "--config", &host.config_arg()])["fleet"].clone()
}

/// Waits until `check` holds, polling every 50 ms, up to `limit`.
pub fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
