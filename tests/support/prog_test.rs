//! The XDP program loaded (never attached) on fresh pinned maps and run on hand-built frames
//! through BPF_PROG_TEST_RUN: the harness of the `xdp_program` and `xdp_limiter` tests.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use api_shield::{
    config,
    fastpath::{self, apply_config, BanRequest, Clock, PinnedMaps, Stats},
};
use api_shield_common::maps;
use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

use super::{
    frames::Frame,
    privileged::{self, PinDir},
};
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

pub struct Harness {
    pub ebpf: Ebpf,
    pub maps: PinnedMaps,
    _pins: PinDir,
}

impl Harness {
    /// Loads the program with `config` (TOML for `[fastpath]` and below) on fresh pinned maps,
    /// with the calling thread pinned to one CPU so per-CPU state is deterministic.
    pub fn new(test: &str, config_text: &str) -> Option<Harness> {
        if !privileged::can_run(test, false) {
            return None;
        }
        let mut cpus = nix::sched::CpuSet::new();
        cpus.set(0).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).unwrap();
        let pins = PinDir::new();
        let config = config::parse(config_text, std::path::Path::new("test.toml")).unwrap();
        let ebpf = fastpath::load_program(&pins.layout(), &config.fastpath)
            .expect("loading the XDP program");
        let mut maps = PinnedMaps::open(&pins.layout()).unwrap();
        apply_config(&mut maps, &config.fastpath).unwrap();
        Some(Harness {
            ebpf,
            maps,
            _pins: pins,
        })
    }

    /// The loaded program.
    fn program(&self) -> &Xdp {
        self.ebpf
            .program(maps::PROGRAM)
            .unwrap()
            .try_into()
            .unwrap()
    }

    pub fn run(&self, frame: &[u8]) -> u32 {
        self.program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    }

    /// Runs the program once on `frame`; returns its action and the frame as it left.
    pub fn run_out(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    pub fn run_frame(&self, frame: &Frame) -> u32 {
        self.run(&frame.build())
    }

    pub fn stats(&self) -> Stats {
        self.maps.stats().unwrap()
    }

    pub fn ban(&mut self, target: &str, ttl: Duration, clock: &impl Clock) {
        self.maps
            .ban(
                &BanRequest {
                    target: fastpath::parse_target(target).unwrap(),
                    ttl: Some(ttl),
                    reason: "test".into(),
                    origin: None,
                },
                clock,
            )
            .unwrap();
    }
}

/// Protects UDP and TCP 9000 with burst 5 at 1 packet/s, so the sixth back-to-back packet of
/// a source is over budget however slowly the test runs.
pub const BASE: &str = r#"
[fastpath]
allow = ["192.0.2.0/24", "2001:db8:a::/48"]
deny = ["198.51.100.0/24", "2001:db8:d::/48"]
[fastpath.limiter]
rate = 1
burst = 5
[fastpath.limiter.protect]
tcp = [9000]
udp = [9000]
"#;

pub const SRC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
pub const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x5, 0x1, 0, 0, 0, 0x10);
