//! The differential rig for the XDP program: frames derived from bytes (random ones in
//! `tests/xdp_model.rs`, fuzzer-chosen ones in the fuzz target `xdp`), the program loaded with a
//! [`Rules`] profile and run on them through BPF_PROG_TEST_RUN, and the comparison of its verdict
//! and counters with the model's. Included by path next to `xdp_model.rs` (as `model`).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use api_shield::{
    config,
    fastpath::{self, BanRequest, Clock, PinnedMaps, SystemClock},
};
use api_shield_common::{config::FLAG_ENABLED, maps, Reason};
use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};

use crate::model::{Model, Net, Rules};

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
/// XDP_PASS.
pub const XDP_PASS: u32 = 2;

/// The limiter's emission interval in the rig: a day, so no key earns a packet back within a
/// run and the model can count (the config's rate cannot go below one packet a second).
pub const EMISSION_NS: u64 = 86_400 * 1_000_000_000;

/// New sources tracked per CPU per second: more than any run sends, so none goes untracked.
const NEW_SOURCES: u32 = 1_000_000_000;

/// Frames are cut to this length (BPF_PROG_TEST_RUN takes up to a page less headroom).
const MAX_FRAME: usize = 1514;

/// Choices read from bytes; past the end every read is zero (the plainest choice).
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    /// Reads `data` from the start.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// A number below `n` (at most 65536).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 256 {
            usize::from(self.u8()) % n
        } else {
            usize::from(self.u16()) % n
        }
    }

    /// True about `percent` of the time; a zero byte is false.
    pub fn chance(&mut self, percent: u32) -> bool {
        u32::from(self.u8()) * 100 >= (100 - percent) * 256
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// The next `n` bytes (zeros past the end).
    pub fn fill(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    /// The next `n` bytes as a reader of their own.
    pub fn take(&mut self, n: usize) -> Bytes<'a> {
        let start = self.pos.min(self.data.len());
        let end = (self.pos + n).min(self.data.len());
        self.pos += n;
        Bytes::new(&self.data[start..end])
    }
}

/// Source addresses worth sending from: the edges and middle of every rule's network, the
/// addresses just outside them, and neighbours that share an IPv6 limiter prefix.
pub struct Pool {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

impl Pool {
    /// The pool for a rule set.
    pub fn new(rules: &Rules) -> Pool {
        let mut pool = Pool {
            v4: Vec::new(),
            v6: Vec::new(),
        };
        let nets = rules
            .allow
            .iter()
            .chain(rules.deny)
            .chain(rules.bans.iter().map(|(n, _)| n));
        for net in nets.map(|n| Net::parse(n)) {
            let last = net.last();
            let middle = net.addr + (last - net.addr) / 2 + 1;
            for addr in [
                net.addr,
                last,
                middle.min(last),
                net.addr.wrapping_sub(1),
                last.wrapping_add(1),
            ] {
                let v6 = Ipv6Addr::from(addr);
                match v6.to_ipv4_mapped() {
                    Some(v4) => pool.v4.push(v4),
                    None => pool.v6.push(v6),
                }
            }
        }
        // Neighbours in one /64, and either side of a /56 boundary.
        for host in 1..6 {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, 5, 1, 0, 0, 0, host);
            pool.v6.push(addr);
        }
        for net in [0x1ff, 0x200] {
            let addr = Ipv6Addr::new(0x2001, 0xdb8, 5, net, 0, 0, 0, 1);
            pool.v6.push(addr);
        }
        pool
    }

    fn v4(&self, b: &mut Bytes) -> Ipv4Addr {
        if b.chance(30) {
            Ipv4Addr::from(u32::from_be_bytes([b.u8(), b.u8(), b.u8(), b.u8()]))
        } else {
            b.pick(&self.v4)
        }
    }

    fn v6(&self, b: &mut Bytes) -> Ipv6Addr {
        match b.below(10) {
            0..=5 => b.pick(&self.v6),
            6 => self.v4(b).to_ipv6_mapped(),
            7 | 8 => {
                let (net, host) = (b.below(4) as u16, b.below(8) as u16);
                Ipv6Addr::new(0x2001, 0xdb8, 5, net, 0, 0, 0, host)
            }
            _ => Ipv6Addr::from(u128::from_be_bytes(b.fill(16).try_into().unwrap())),
        }
    }
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// A frame chosen by `b`: VLAN tags (none to three), IPv4 with options and fragments, IPv6 with
/// extension headers, other EtherTypes and raw bytes; length fields sometimes wrong, the frame
/// sometimes cut short or with a byte overwritten. Always at least an Ethernet header long.
pub fn frame(b: &mut Bytes, pool: &Pool) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for _ in 0..b.pick(&[0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3]) {
        let tpid = if b.chance(12) {
            b.u16()
        } else {
            b.pick(&[ETH_P_8021Q, ETH_P_8021AD])
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&b.u16().to_be_bytes());
    }
    match b.below(32) {
        0..=14 => ipv4(b, pool, &mut f),
        15..=29 => ipv6(b, pool, &mut f),
        30 => {
            f.extend_from_slice(&b.u16().to_be_bytes());
            let n = b.below(64);
            f.extend(b.fill(n));
        }
        _ => {
            let ethertype = b.pick(&[ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD]);
            f.extend_from_slice(&ethertype.to_be_bytes());
            let n = b.below(200);
            f.extend(b.fill(n));
        }
    }
    let n = b.below(32);
    f.extend(std::iter::repeat_n(0, n));
    f.truncate(MAX_FRAME);
    if b.chance(25) {
        let cut = 14 + b.below(f.len() - 14 + 1);
        f.truncate(cut);
    }
    if b.chance(10) {
        let at = b.below(f.len().min(128));
        f[at] = b.u8();
    }
    f
}

fn ipv4(b: &mut Bytes, pool: &Pool, f: &mut Vec<u8>) {
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let ihl = if b.chance(25) { b.below(16) as u8 } else { 5 };
    let version = if b.chance(5) { b.u8() >> 4 } else { 4 };
    let proto = match b.pick(&[TCP, UDP, TCP, UDP, 1, 0]) {
        0 => b.u8(),
        proto => proto,
    };
    let fragment = match b.below(8) {
        0..=3 => 0,
        4 => 0x4000,
        5 => 0x2000,
        6 => 0x2000 | (1 + b.below(0x1fff)) as u16,
        _ => b.u16(),
    };
    let src = pool.v4(b);
    let l4 = transport(b, proto);
    let header_len = usize::from(ihl) * 4;
    let mut h = vec![0u8; header_len.max(20)];
    h[0] = version << 4 | ihl;
    let total = if b.chance(20) {
        b.u16()
    } else {
        (header_len + l4.len()) as u16
    };
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&fragment.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&[10, 201, 0, 2]);
    for byte in &mut h[20..] {
        *byte = b.u8();
    }
    f.extend(h);
    f.extend(l4);
}

fn ipv6(b: &mut Bytes, pool: &Pool, f: &mut Vec<u8>) {
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    let version = if b.chance(5) { b.u8() >> 4 } else { 6 };
    let src = pool.v6(b);
    let mut chain: Vec<(u8, Vec<u8>)> = (0..b.pick(&[0, 0, 0, 1, 1, 2, 3, 5, 6, 7]))
        .map(|_| extension(b))
        .collect();
    let proto = match b.pick(&[TCP, UDP, TCP, UDP, 58, 0]) {
        0 => b.u8(),
        proto => proto,
    };
    let l4 = transport(b, proto);
    let payload = chain.iter().map(|(_, e)| e.len()).sum::<usize>() + l4.len();
    let payload = if b.chance(20) {
        b.u16()
    } else {
        payload as u16
    };
    let mut h = vec![0u8; 40];
    h[0] = version << 4;
    h[4..6].copy_from_slice(&payload.to_be_bytes());
    h[6] = chain.first().map_or(proto, |(kind, _)| *kind);
    h[7] = 64;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2).octets());
    f.extend(h);
    let kinds: Vec<u8> = chain.iter().skip(1).map(|(kind, _)| *kind).collect();
    for (i, (_, bytes)) in chain.iter_mut().enumerate() {
        bytes[0] = kinds.get(i).copied().unwrap_or(proto);
        f.extend_from_slice(bytes);
    }
    f.extend(l4);
}

/// An IPv6 extension header: (type, bytes with the length field set; next header set later).
fn extension(b: &mut Bytes) -> (u8, Vec<u8>) {
    let len = match b.below(10) {
        0..=6 => b.below(4),
        7 | 8 => b.below(64),
        _ => usize::from(b.u8()),
    };
    match b.below(6) {
        0..=2 => {
            let mut e = vec![0u8; (len + 1) * 8];
            e[1] = len as u8;
            (b.pick(&[0, 43, 60]), e)
        }
        3 => {
            let mut e = vec![0u8; 8];
            let offset = if b.chance(50) {
                1 + b.below(0x1fff) as u16
            } else {
                0
            };
            let more = u16::from(b.u8() & 1);
            e[2..4].copy_from_slice(&(offset << 3 | more).to_be_bytes());
            (44, e)
        }
        4 => {
            let mut e = vec![0u8; (len + 2) * 4];
            e[1] = len as u8;
            (51, e)
        }
        _ => (b.u8(), vec![0u8; 8]),
    }
}

/// A transport header: TCP and UDP to a port (protected or not), anything else as bytes.
fn transport(b: &mut Bytes, proto: u8) -> Vec<u8> {
    let port = if b.chance(20) {
        b.u16()
    } else {
        b.pick(&[443, 8000, 8050, 8100, 7999, 8101, 53, 9000, 22, 80, 8443])
    };
    let mut h = vec![0u8; if proto == TCP { 20 } else { 8 }];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&port.to_be_bytes());
    if proto == TCP {
        // Data offset 5; flags: bare SYNs (charged to the limiter), segments of a connection
        // (ACK, PSH+ACK, SYN+ACK, RST, FIN+ACK), none at all, or any byte.
        h[12] = 5 << 4;
        h[13] = match b.below(10) {
            0..=3 => 0x02,
            4 => 0x10,
            5 => 0x18,
            6 => 0x12,
            7 => 0x04,
            8 => 0,
            _ => b.u8(),
        };
    }
    if proto != TCP && proto != UDP {
        for byte in &mut h {
            *byte = b.u8();
        }
    }
    h
}

/// The program loaded on maps of its own, configured with a rule set.
pub struct Rig {
    ebpf: Ebpf,
    maps: PinnedMaps,
    /// Packets and bytes per reason after the last frame.
    counters: Vec<(u64, u64)>,
}

/// A clock at boot: bans made with it have expired long ago.
struct AtBoot;

impl Clock for AtBoot {
    fn monotonic_ns(&self) -> u64 {
        0
    }
    fn wall(&self) -> SystemTime {
        UNIX_EPOCH
    }
}

impl Rig {
    /// Loads the program with `rules` (needs root and BPF). The calling thread is pinned to CPU
    /// 0, so the per-CPU verdict cache the model mirrors is one table. The maps are pinned only
    /// while they are opened, so nothing is left on bpffs whatever happens later.
    pub fn new(rules: &Rules) -> Rig {
        let mut cpus = nix::sched::CpuSet::new();
        cpus.set(0).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).unwrap();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pins = PathBuf::from(format!(
            "/sys/fs/bpf/asx-model-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let config = config::parse(&config_text(rules), Path::new("xdp-model.toml"))
            .expect("the rule set is a valid config");
        let layout = fastpath::layout_dir(&pins);
        let loaded = fastpath::load_program(&layout, &config.fastpath)
            .and_then(|ebpf| Ok((ebpf, PinnedMaps::open(&layout)?)));
        let _ = std::fs::remove_dir_all(&pins);
        let (ebpf, mut maps) = loaded.expect("loading the XDP program");
        fastpath::apply_config(&mut maps, &config.fastpath).unwrap();
        let mut settings = fastpath::shield_config(&config.fastpath);
        settings.emission_ns = EMISSION_NS;
        // Cached deny verdicts last one drop-event interval: a day, like the limiter's.
        settings.event_interval_ns = EMISSION_NS;
        settings.tolerance_ns = EMISSION_NS * u64::from(rules.burst);
        if !rules.enabled {
            settings.flags &= !FLAG_ENABLED;
        }
        maps.config.set(0, settings, 0).unwrap();
        let mut rig = Rig {
            ebpf,
            maps,
            counters: Vec::new(),
        };
        for (i, (net, in_force)) in rules.bans.iter().enumerate() {
            // Bans in force: alternately permanent and for 30 days.
            let ttl = (i % 2 == 1).then_some(Duration::from_secs(30 * 86_400));
            rig.ban(net, *in_force, ttl);
        }
        rig.counters = rig.read_counters();
        rig
    }

    fn ban(&mut self, net: &str, in_force: bool, ttl: Option<Duration>) {
        let request = BanRequest {
            target: fastpath::parse_target(net).unwrap(),
            ttl: if in_force {
                ttl
            } else {
                Some(Duration::from_secs(1))
            },
            reason: "model".into(),
            origin: None,
        };
        let clock: &dyn Clock = if in_force { &SystemClock } else { &AtBoot };
        self.maps.ban(&request, clock).unwrap();
    }

    fn read_counters(&self) -> Vec<(u64, u64)> {
        let stats = self.maps.stats().unwrap();
        stats
            .counters
            .iter()
            .map(|c| (c.packets, c.bytes))
            .collect()
    }

    /// Runs the program on `frame`: its verdict and the counters that moved (reason, packets,
    /// bytes).
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<(Reason, u64, u64)>) {
        let program: &Xdp = self
            .ebpf
            .program(maps::PROGRAM)
            .unwrap()
            .try_into()
            .unwrap();
        let verdict = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN")
            .return_value;
        let counters = self.read_counters();
        let moved = counters
            .iter()
            .zip(&self.counters)
            .zip(Reason::ALL)
            .filter(|((now, before), _)| now != before)
            .map(|((now, before), reason)| (reason, now.0 - before.0, now.1 - before.1))
            .collect();
        self.counters = counters;
        (verdict, moved)
    }

    /// Undoes what frames did to the program's state since loading, as `model` knows it: the
    /// limiter entries go, the expired bans it deleted come back, and the verdict cache is
    /// voided. A fresh [`Model`] then matches the program again.
    pub fn reset(&mut self, model: &Model) {
        for key in model.limiter_keys() {
            let _ = self.maps.limiter.remove(&key);
        }
        for net in model.deleted_bans() {
            self.ban(net, false, None);
        }
        self.maps.bump_rules_generation().unwrap();
    }
}

/// The `[fastpath]` config of a rule set (the bans and the settings the config cannot express
/// are written by [`Rig::new`]).
fn config_text(rules: &Rules) -> String {
    let list = |items: Vec<String>| items.join(", ");
    let nets = |nets: &[&str]| list(nets.iter().map(|n| format!("\"{n}\"")).collect());
    let ports =
        |ranges: &[(u16, u16)]| list(ranges.iter().map(|(a, b)| format!("\"{a}-{b}\"")).collect());
    format!(
        "[fastpath]\ndry_run = {}\nallow = [{}]\ndeny = [{}]\n\
         [fastpath.limiter]\nburst = {}\nipv6_prefix = {}\nnew_sources_per_cpu = {NEW_SOURCES}\n\
         [fastpath.limiter.protect]\nall = {}\ntcp = [{}]\nudp = [{}]\n",
        rules.dry_run,
        nets(rules.allow),
        nets(rules.deny),
        rules.burst,
        rules.ipv6_prefix,
        rules.protect_all,
        ports(rules.tcp),
        ports(rules.udp),
    )
}

/// Runs `frame` through the model and the program: the model's reason when both agree on the
/// verdict and on the one counter that moved (by one packet of the frame's length), otherwise
/// what differs.
pub fn check(rig: &mut Rig, model: &mut Model, frame: &[u8]) -> Result<Reason, String> {
    let reason = model.decide(frame);
    let verdict = if reason.action() == "drop" {
        XDP_DROP
    } else {
        XDP_PASS
    };
    let (got_verdict, moved) = rig.run(frame);
    if got_verdict == verdict && moved == [(reason, 1, frame.len() as u64)] {
        return Ok(reason);
    }
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    Err(format!(
        "model: {reason:?} (verdict {verdict}); program: verdict {got_verdict}, counters moved \
         {moved:?}; model's parse {:?}; frame of {} bytes: {hex}",
        crate::model::parse(frame),
        frame.len()
    ))
}
