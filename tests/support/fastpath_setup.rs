//! A fast-path test setup: a veth topology between two namespaces, a bpffs pin directory, a
//! runtime directory and a config for the daemon on the receiving side (limiter on one port,
//! an allow list), with helpers to send traffic and read the counters. Tests using it run one at
//! a time: they measure rates.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    sync::Mutex,
};

use api_shield::fastpath::{PinnedMaps, Stats};

use super::{
    daemon::Daemon,
    netns::Topology,
    privileged::{self, PinDir},
    traffic::{send_burst, Counting, MARKER_CIDR, MARKER_SRC},
};

static SERIAL: Mutex<()> = Mutex::new(());

pub const PROTECTED: u16 = 9000;
pub const UNPROTECTED: u16 = 9001;
pub const RATE: u64 = 100;
pub const BURST: u64 = 20;
pub const ALLOWED_SRC: Ipv4Addr = Ipv4Addr::new(10, 201, 9, 1);

/// A topology, pin and runtime directories, and a config file for them.
pub struct Setup {
    pub topo: Topology,
    pub pins: PinDir,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Setup {
    pub fn new(test: &str, extra: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Setup)> {
        if !privileged::can_run(test, true) {
            return None;
        }
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let topo = Topology::new();
        let pins = PinDir::new();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("api-shield.toml");
        let mut setup = Setup {
            topo,
            pins,
            dir,
            config,
        };
        setup.write_config(extra);
        setup
            .topo
            .add_sources(&[IpAddr::V4(MARKER_SRC), IpAddr::V4(ALLOWED_SRC)]);
        Some((serial, setup))
    }

    /// Creates the veth pair again (after a test deleted it) with the base sources and `extra`.
    pub fn restore_link(&self, extra: &[IpAddr]) {
        self.topo.add_link();
        self.topo
            .add_sources(&[IpAddr::V4(MARKER_SRC), IpAddr::V4(ALLOWED_SRC)]);
        self.topo.add_sources(extra);
    }

    pub fn write_config(&mut self, extra: &str) {
        let text = format!(
            r#"
[fastpath]
interfaces = ["{rx_if}"]
pin_dir = "{pins}"
runtime_dir = "{runtime}"
allow = ["{MARKER_CIDR}", "10.201.9.0/24"]
{extra}
[fastpath.limiter]
rate = {RATE}
burst = {BURST}
[fastpath.limiter.protect]
tcp = [{PROTECTED}]
udp = [{PROTECTED}]
"#,
            rx_if = self.topo.rx_if,
            pins = self.pins.path.display(),
            runtime = self.dir.path().join("run").display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Adds `lines` (`key = value`, each ending in a newline) to the `[fastpath.limiter]` table.
    pub fn add_limiter_settings(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let burst_line = format!("burst = {BURST}\n");
        assert!(text.contains(&burst_line));
        let text = text.replace(&burst_line, &format!("{burst_line}{lines}"));
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    pub fn daemon(&self) -> Daemon {
        Daemon::start(Some(&self.topo.rx.name), &self.config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sends `count` datagrams back to back from `src` to `port`; returns how many arrived.
    pub fn delivered(&self, src: IpAddr, port: u16, count: u64) -> u64 {
        let counting = Counting::start(&self.topo.rx, port);
        send_burst(&self.topo.tx, src, port, count);
        counting
            .finish(&self.topo.tx, port)
            .get(&src)
            .copied()
            .unwrap_or(0)
    }

    pub fn stats(&self) -> Stats {
        PinnedMaps::open(&self.pins.layout())
            .unwrap()
            .stats()
            .unwrap()
    }
}

pub fn v4_sources(third: u8, n: u8) -> Vec<IpAddr> {
    (1..=n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 201, third, i)))
        .collect()
}

/// IPv6 sources, each in its own /64 (the limiter groups a /64).
pub fn v6_sources(n: u16) -> Vec<IpAddr> {
    (1..=n)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x201, 0, 0x100 + i, 0, 0, 0, 1)))
        .collect()
}
