//! The receiving side: api-shield's program (limiter on: every flood source is over its budget),
//! an nftables netdev-ingress rule, and the measurements of the receiving veth's NAPI kthread.

use std::{collections::HashSet, fs::File, path::PathBuf};

use anyhow::{Context as _, Result};
use api_shield::{
    config,
    fastpath::{self, apply_config, layout_dir, DenyTable, PinnedMaps, RuleKey},
};
use api_shield_common::{maps, Reason, ShieldConfig};
use aya::{
    programs::{xdp::XdpLinkId, TestRun, TestRunOptions, Xdp, XdpMode},
    Ebpf,
};
use nix::sched::{sched_setaffinity, setns, CloneFlags, CpuSet};

use crate::{
    measure::{napi_cpu_ns, Snapshot},
    topology::{ip, run, Topology},
};

/// What filters the flood during a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// api-shield attached in driver (native) mode, limiter dropping.
    Driver,
    /// api-shield in driver mode with the flood's 256 sources (/32s) in its deny table: every
    /// packet is a deny-list drop (looked up once per source and drop-event interval, then
    /// taken from the per-CPU verdict cache).
    DenyFlood,
    /// The same with `--deny-entries` random /32s more in the table.
    DenyFloodLarge,
    /// The yardstick: a minimal drop-by-source XDP program on an LRU hash, in driver mode.
    BareDrop,
    /// api-shield attached in driver mode but passing; an nftables ingress rule drops.
    Nftables,
    /// api-shield attached in generic mode, limiter dropping.
    Generic,
    /// Nothing attached: the stack drops the datagrams (no socket on the port).
    NoFilter,
}

impl State {
    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            State::Driver => "api-shield driver",
            State::DenyFlood => "api-shield driver, deny list of the 256 flood sources",
            State::DenyFloodLarge => "api-shield driver, the same deny list + N random entries",
            State::BareDrop => "minimal LRU drop driver",
            State::Nftables => "nftables ingress",
            State::Generic => "api-shield generic",
            State::NoFilter => "no filter",
        }
    }
}

const NFT_TABLE: &str = "asxbench";
const BARE_PROGRAM: &str = "bench_bare_drop";

/// The receiver's filters and probes.
pub struct Receiver {
    ebpf: Ebpf,
    bare: Ebpf,
    bare_link: Option<XdpLinkId>,
    maps: PinnedMaps,
    /// The deny table, what the deny states fill it with (it is empty in the others), and
    /// which of those it holds now.
    deny: DenyTable,
    deny_small: HashSet<RuleKey>,
    deny_large: HashSet<RuleKey>,
    deny_now: Option<State>,
    enabled: ShieldConfig,
    link: Option<(XdpLinkId, XdpMode)>,
    nft: bool,
    pin_dir: PathBuf,
    rx_ns: String,
    rx_if: String,
}

impl Receiver {
    /// Loads api-shield's program (not yet attached) with a limiter of 1 packet/s, burst 1, on
    /// the flood's port, and a deny table with room for the flood's sources and `deny_entries`
    /// random networks (written in the deny states only); moves this thread into the receiver
    /// namespace.
    pub fn new(topology: &Topology, deny_entries: usize) -> Result<Receiver> {
        let ns = File::open(format!("/run/netns/{}", topology.rx_ns))?;
        setns(ns, CloneFlags::CLONE_NEWNET).context("entering the receiver namespace")?;
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/asx-bench-{}", std::process::id()));
        let text = format!(
            "[fastpath]\ninterfaces = [\"{}\"]\npin_dir = \"{}\"\nmax_deny = {}\n[fastpath.limiter]\nrate = 1\nburst = 1\n[fastpath.limiter.protect]\ntcp = [\"1-65535\"]\nudp = [{}]\n",
            topology.rx_if,
            pin_dir.display(),
            (deny_entries + 2048).min(16_777_216),
            crate::topology::PORT
        );
        let config = config::parse(&text, std::path::Path::new("bench.toml"))?;
        let dir = layout_dir(&pin_dir);
        let ebpf = fastpath::load_program(&dir, &config.fastpath)?;
        let mut maps = PinnedMaps::open(&dir)?;
        apply_config(&mut maps, &config.fastpath)?;
        let deny = DenyTable::open(&dir, config.fastpath.max_deny)?;
        let flood = ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 202, 0, 0), 24)?;
        let deny_small: HashSet<RuleKey> = flood
            .hosts()
            .chain([flood.network(), flood.broadcast()])
            .map(|ip| RuleKey::of(&ipnet::IpNet::from(std::net::IpAddr::V4(ip))))
            .collect();
        let mut deny_large = deny_small.clone();
        deny_large.extend(
            crate::nets::random_networks(deny_entries, 32, 0x5eed, flood)
                .iter()
                .map(RuleKey::of),
        );
        let mut bare =
            Ebpf::load(crate::generator::FLOOD_OBJECT).context("loading the yardstick")?;
        let program: &mut Xdp = bare
            .program_mut(BARE_PROGRAM)
            .context("yardstick")?
            .try_into()?;
        program.load()?;
        Ok(Receiver {
            ebpf,
            bare,
            bare_link: None,
            maps,
            deny,
            deny_small,
            deny_large,
            deny_now: None,
            enabled: fastpath::shield_config(&config.fastpath),
            link: None,
            nft: false,
            pin_dir,
            rx_ns: topology.rx_ns.clone(),
            rx_if: topology.rx_if.clone(),
        })
    }

    /// Per-packet program cost on each decision path, through `BPF_PROG_TEST_RUN` (before the
    /// program is attached).
    pub fn program_costs(
        &mut self,
        frame_from: impl Fn([u8; 4]) -> Vec<u8>,
    ) -> Result<Vec<(&'static str, f64)>> {
        let banned = [10, 202, 0, 253];
        self.maps.ban(
            &fastpath::BanRequest {
                target: std::net::IpAddr::from(banned).into(),
                ttl: Some(std::time::Duration::from_hours(1)),
                reason: "bench".into(),
                origin: None,
            },
            &fastpath::SystemClock,
        )?;
        let limited = crate::micro::ns_per_run(&self.ebpf, &frame_from([10, 202, 0, 1]))?;
        let ban = crate::micro::ns_per_run(&self.ebpf, &frame_from(banned))?;
        self.set_program_enabled(false)?;
        let disabled = crate::micro::ns_per_run(&self.ebpf, &frame_from([10, 202, 0, 1]))?;
        self.set_program_enabled(true)?;
        self.maps.unban(&std::net::IpAddr::from(banned).into())?;
        let yardstick =
            crate::micro::ns_per_run_of(&self.bare, BARE_PROGRAM, &frame_from([10, 202, 0, 1]))?;
        // TCP segments (every TCP port is protected): one of a real connection in this
        // process's namespace, where BPF_PROG_TEST_RUN looks sockets up, and one of none.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (_accepted, _) = listener.accept()?;
        let (std::net::SocketAddr::V4(from), std::net::SocketAddr::V4(to)) =
            (client.local_addr()?, listener.local_addr()?)
        else {
            anyhow::bail!("an IPv4 loopback connection");
        };
        let segment = |from, flags| crate::generator::tcp_frame([2; 6], [2; 6], from, to, flags);
        let flow = crate::micro::ns_per_run(&self.ebpf, &segment(from, 0x10))?;
        let stranger = std::net::SocketAddrV4::new(*from.ip(), from.port() ^ 1);
        let no_flow = crate::micro::ns_per_run(&self.ebpf, &segment(stranger, 0x10))?;
        let (answer, single_limited) = syn_answer_ns(&self.ebpf, &frame_from([10, 202, 0, 1]))?;
        Ok(vec![
            ("yardstick: minimal LRU drop", yardstick),
            ("limiter drop (source over budget)", limited),
            ("ban drop", ban),
            ("program disabled (pass at once)", disabled),
            ("TCP segment of a connection (pass, uncharged)", flow),
            ("TCP segment of no connection (ACK flood drop)", no_flow),
            ("limiter drop, single runs", single_limited),
            (
                "SYN answered with a SYN cookie (XDP_TX), single runs",
                answer,
            ),
        ])
    }

    /// Switches to a state.
    pub fn enter(&mut self, state: State) -> Result<()> {
        if state != State::BareDrop {
            self.attach_bare(false)?;
        }
        self.fill_deny(state)?;
        match state {
            State::BareDrop => {
                self.set_nft(false)?;
                self.attach(None)?;
                self.attach_bare(true)
            }
            State::Driver | State::DenyFlood | State::DenyFloodLarge => {
                self.set_nft(false)?;
                self.set_program_enabled(true)?;
                self.attach(Some(XdpMode::Driver))
            }
            State::Nftables => {
                self.set_program_enabled(false)?;
                self.attach(Some(XdpMode::Driver))?;
                self.set_nft(true)
            }
            State::Generic => {
                self.set_nft(false)?;
                self.set_program_enabled(true)?;
                self.attach(Some(XdpMode::Skb))
            }
            State::NoFilter => {
                self.set_nft(false)?;
                self.attach(None)
            }
        }
    }

    /// Gives the deny table what `state` measures (through the daemon's path,
    /// `DenyTable::replace`): the flood's sources, those and the random entries, or nothing.
    fn fill_deny(&mut self, state: State) -> Result<()> {
        let wanted = match state {
            State::DenyFlood | State::DenyFloodLarge => Some(state),
            _ => None,
        };
        if wanted == self.deny_now {
            return Ok(());
        }
        let entries = match wanted {
            Some(State::DenyFlood) => self.deny_small.clone(),
            Some(_) => self.deny_large.clone(),
            None => HashSet::new(),
        };
        self.deny.replace(1, &entries)?;
        self.deny_now = wanted;
        Ok(())
    }

    fn set_program_enabled(&mut self, enabled: bool) -> Result<()> {
        let value = if enabled {
            self.enabled
        } else {
            ShieldConfig::default()
        };
        self.maps.config.set(0, value, 0)?;
        Ok(())
    }

    fn attach(&mut self, mode: Option<XdpMode>) -> Result<()> {
        if self.link.as_ref().map(|(_, m)| *m) == mode {
            return Ok(());
        }
        let program: &mut Xdp = self
            .ebpf
            .program_mut(maps::PROGRAM)
            .context("program")?
            .try_into()?;
        if let Some((id, _)) = self.link.take() {
            program.detach(id)?;
        }
        if let Some(mode) = mode {
            let id = program
                .attach(&self.rx_if, mode)
                .with_context(|| format!("attaching in {mode:?} mode"))?;
            self.link = Some((id, mode));
        }
        Ok(())
    }

    fn attach_bare(&mut self, on: bool) -> Result<()> {
        if on == self.bare_link.is_some() {
            return Ok(());
        }
        let program: &mut Xdp = self
            .bare
            .program_mut(BARE_PROGRAM)
            .context("yardstick")?
            .try_into()?;
        match self.bare_link.take() {
            Some(id) => program.detach(id)?,
            None => self.bare_link = Some(program.attach(&self.rx_if, XdpMode::Driver)?),
        }
        Ok(())
    }

    fn bare_drops(&self) -> Result<u64> {
        let map = self.bare.map("BARE_DROPS").context("BARE_DROPS")?;
        let counts: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map)?;
        Ok(counts.get(&0, 0)?.iter().sum())
    }

    fn set_nft(&mut self, on: bool) -> Result<()> {
        if on == self.nft {
            return Ok(());
        }
        if on {
            let rules = format!(
                "table netdev {NFT_TABLE} {{\n chain ingress {{\n  type filter hook ingress device \"{}\" priority -500; policy accept;\n  ip saddr 10.202.0.0/24 counter drop\n }}\n}}\n",
                self.rx_if
            );
            run(
                "ip",
                &["netns", "exec", &self.rx_ns, "nft", "-f", "-"],
                Some(&rules),
            )?;
        } else {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.rx_ns,
                    "nft",
                    "delete",
                    "table",
                    "netdev",
                    NFT_TABLE,
                ],
                None,
            )?;
        }
        self.nft = on;
        Ok(())
    }

    /// CPU time of the receiving NAPI kthread(s), pinned to CPU1, and the packets the state's
    /// filter handled so far.
    pub fn snapshot(&self, state: State) -> Result<Snapshot> {
        let threads = crate::topology::napi_threads(&self.rx_if)?;
        let mut cpu1 = CpuSet::new();
        cpu1.set(1)?;
        for pid in &threads {
            sched_setaffinity(nix::unistd::Pid::from_raw(*pid), &cpu1)?;
        }
        let packets = match state {
            State::Driver | State::Generic => {
                let counters = self.maps.stats()?;
                counters.packets(Reason::DropRateLimited) + counters.packets(Reason::DropUntracked)
            }
            State::DenyFlood | State::DenyFloodLarge => {
                self.maps.stats()?.packets(Reason::DropDenied)
            }
            State::BareDrop => self.bare_drops()?,
            State::Nftables => self.nft_counter()?,
            State::NoFilter => self.rx_packets()?,
        };
        Ok(Snapshot {
            cpu_ns: napi_cpu_ns(&threads)?,
            packets,
            at: std::time::Instant::now(),
        })
    }

    fn nft_counter(&self) -> Result<u64> {
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.rx_ns,
                "nft",
                "-j",
                "list",
                "table",
                "netdev",
                NFT_TABLE,
            ],
            None,
        )?;
        let json: serde_json::Value = serde_json::from_str(&out)?;
        json["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["rule"]["expr"].as_array())
            .flatten()
            .find_map(|expr| expr["counter"]["packets"].as_u64())
            .context("no counter in the nftables rule")
    }

    fn rx_packets(&self) -> Result<u64> {
        let out = ip(&[
            "-n",
            &self.rx_ns,
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            &self.rx_if,
        ])?;
        let json: serde_json::Value = serde_json::from_str(&out)?;
        json[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .context("rx packets")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.set_nft(false);
        let _ = std::fs::remove_dir_all(&self.pin_dir);
    }
}

/// The `XDP_TX` action.
const XDP_TX: u32 = 3;

/// Test runs of one SYN each (see [`syn_answer_ns`]).
const ANSWER_RUNS: u32 = 100_000;

/// Nanoseconds per run of api-shield's program answering a SYN with a SYN cookie from the NIC
/// (the listener's lookup, the kernel's cookie, the SYN-ACK written in place, `XDP_TX`).
///
/// The answer rewrites the frame, so each test run takes one fresh SYN (`repeat` would run the
/// program again on its own SYN-ACK): the mean of the kernel's duration over `ANSWER_RUNS`
/// single runs, each from a source of its own (never seen, so never verified). Test runs look
/// sockets up in the calling thread's network namespace: a thread of its own enters a new one,
/// with a listener on loopback and `net.ipv4.tcp_syncookies = 2` (the kernel answers every SYN
/// with a cookie, as it does under a flood once its SYN queue is full). Every TCP port must be
/// protected by the program's settings.
///
/// Single runs carry more of the harness than runs repeated in the kernel: `baseline` (a frame
/// of a source over budget) is timed the same way, so the two tell the answer's own cost.
/// Returns (answer, baseline) in ns per run.
pub fn syn_answer_ns(ebpf: &Ebpf, baseline: &[u8]) -> Result<(f64, f64)> {
    let program: &Xdp = ebpf.program(maps::PROGRAM).context("program")?.try_into()?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(f64, f64)> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .context("a network namespace for the SYN answer's test runs")?;
                // Children forked from this thread share its namespace; /proc/sys/net is the
                // calling thread's.
                let up = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()?;
                anyhow::ensure!(up.success(), "ip link set lo up");
                std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2")?;
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                let std::net::SocketAddr::V4(to) = listener.local_addr()? else {
                    anyhow::bail!("an IPv4 listener");
                };
                let mut total = std::time::Duration::ZERO;
                for i in 0..ANSWER_RUNS {
                    let [_, a, b, c] = i.to_be_bytes();
                    let from = std::net::SocketAddrV4::new([10, 203 + a, b, c].into(), 40000);
                    let frame = crate::generator::tcp_frame([2; 6], [2; 6], from, to, 0x02);
                    let result = program.test_run(TestRunOptions {
                        data_in: Some(&frame),
                        repeat: 1,
                        ..Default::default()
                    })?;
                    anyhow::ensure!(
                        result.return_value == XDP_TX,
                        "the SYN from {from} was not answered (action {})",
                        result.return_value
                    );
                    total += result.duration;
                }
                let mut base = std::time::Duration::ZERO;
                for _ in 0..ANSWER_RUNS {
                    let result = program.test_run(TestRunOptions {
                        data_in: Some(baseline),
                        repeat: 1,
                        ..Default::default()
                    })?;
                    base += result.duration;
                }
                let per_run = |d: std::time::Duration| d.as_nanos() as f64 / f64::from(ANSWER_RUNS);
                Ok((per_run(total), per_run(base)))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the SYN answer's thread panicked"))?
    })
}
