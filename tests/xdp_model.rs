//! The XDP program against a userspace model of its rules (`support/xdp_model.rs`): thousands
//! of structured random frames per rule profile (built by `support/xdp_diff.rs`: VLAN stacks,
//! IPv4 options and fragments, IPv6 extension chains, sources in, at the edges of and just
//! outside every allow, deny and ban network, v4-mapped IPv6 sources, protected and unprotected
//! ports, cut frames, wrong length fields, overwritten bytes), each run through
//! BPF_PROG_TEST_RUN, its verdict and the counter it lands in compared with the model's.
//!
//! The seed is printed; `XDP_MODEL_SEED=<n>` replays a run and `XDP_MODEL_FRAMES=<n>` sets the
//! frames per profile. The fuzz target `xdp` (xtask/fuzz) makes the same check on fuzzer-chosen
//! frames.

use crate::support;

use crate::{diff, model};

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    panic::Location,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use api_shield_common::Reason;
use diff::{Bytes, Pool, Rig};
use model::{Model, Rules, PROFILES};
use support::{
    frames::{self, Frame, L3, L4},
    privileged,
};

/// Frames per profile unless `XDP_MODEL_FRAMES` says otherwise.
const FRAMES: usize = 4000;

fn profile(name: &str) -> &'static Rules {
    PROFILES.iter().find(|r| r.name == name).unwrap()
}

/// splitmix64: a seeded source of the bytes frames are chosen from.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The reasons a profile's random frames must reach (the model decides which frame gets which).
fn reachable(rules: &Rules) -> Vec<Reason> {
    if !rules.enabled {
        return vec![Reason::PassDisabled];
    }
    let drop = |r: Reason| if rules.dry_run { r.dry_run() } else { r };
    let mut reasons = vec![
        Reason::PassNotIp,
        Reason::PassMalformed,
        Reason::PassAllowed,
        drop(Reason::DropDenied),
        drop(Reason::DropBanned),
    ];
    if rules.protect_all || !rules.tcp.is_empty() || !rules.udp.is_empty() {
        reasons.extend([Reason::PassWithinLimit, drop(Reason::DropRateLimited)]);
    }
    if rules.protect_all || !rules.tcp.is_empty() {
        reasons.push(drop(Reason::DropNoFlow));
    }
    if !rules.protect_all {
        reasons.push(Reason::PassUnprotected);
    }
    reasons
}

/// Random frames through the program and the model under one profile.
fn differential(name: &str) {
    let test = format!("differential_{name}");
    if !privileged::can_run(&test, false) {
        return;
    }
    let rules = profile(name);
    let seed = match std::env::var("XDP_MODEL_SEED") {
        Ok(text) => text.parse().expect("XDP_MODEL_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    let count = std::env::var("XDP_MODEL_FRAMES").map_or(FRAMES, |n| n.parse().unwrap());
    eprintln!("{test}: seed {seed}, {count} frames (XDP_MODEL_SEED={seed} replays)");
    // Each profile draws its own frames from the one seed.
    let salt = name
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(b));
    let mut rng = Rng(seed ^ salt);
    let pool = Pool::new(rules);
    let mut rig = Rig::new(rules);
    let mut model = Model::new(rules);
    let mut seen: BTreeMap<Reason, usize> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..count {
        // Halfway, start over from the loaded state as the fuzz target does for every input.
        if i == count / 2 {
            rig.reset(&model);
            model = Model::new(rules);
        }
        let bytes: Vec<u8> = (0..64).flat_map(|_| rng.next().to_le_bytes()).collect();
        let frame = diff::frame(&mut Bytes::new(&bytes), &pool);
        match diff::check(&mut rig, &mut model, &frame) {
            Ok(reason) => *seen.entry(reason).or_default() += 1,
            Err(disagreement) => panic!("{test}: seed {seed}, frame {i}: {disagreement}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_nanos(diff::EMISSION_NS / 2),
        "the run outlasted half the limiter's emission interval: the model's count no longer holds"
    );
    eprintln!("{test}: counted {seen:?}");
    let missing: Vec<Reason> = reachable(rules)
        .into_iter()
        .filter(|r| !seen.contains_key(r))
        .collect();
    assert!(
        missing.is_empty(),
        "{test}: seed {seed}: no frame of {count} was counted as {missing:?} ({seen:?})"
    );
}

#[test]
fn differential_ports() {
    differential("ports");
}

#[test]
fn differential_tcp_dry_run() {
    differential("tcp_dry_run");
}

#[test]
fn differential_udp_only() {
    differential("udp_only");
}

#[test]
fn differential_protect_all() {
    differential("protect_all");
}

#[test]
fn differential_unprotected() {
    differential("unprotected");
}

#[test]
fn differential_disabled() {
    differential("disabled");
}

/// Hand-built frames under one profile, in order, each with the reason a reader expects: the
/// model is held to these (no privileges needed), then the program to the model. A failure
/// names the line of the case.
struct Cases {
    profile: &'static str,
    cases: Vec<(Reason, &'static Location<'static>, Vec<u8>)>,
}

impl Cases {
    fn new(profile: &'static str) -> Cases {
        Cases {
            profile,
            cases: Vec::new(),
        }
    }

    #[track_caller]
    fn add(&mut self, reason: Reason, frame: Vec<u8>) {
        self.cases.push((reason, Location::caller(), frame));
    }

    fn check(&self) {
        let name = self.profile;
        let rules = profile(name);
        let mut model = Model::new(rules);
        for (reason, line, frame) in &self.cases {
            assert_eq!(
                model.decide(frame),
                *reason,
                "model, {name}, case at {line}"
            );
        }
        if !privileged::can_run(&format!("hand-built frames ({name})"), false) {
            return;
        }
        let mut rig = Rig::new(rules);
        let mut model = Model::new(rules);
        for (_, line, frame) in &self.cases {
            if let Err(disagreement) = diff::check(&mut rig, &mut model, frame) {
                panic!("{name}, case at {line}: {disagreement}");
            }
        }
    }
}

fn udp4(src: [u8; 4], port: u16) -> Vec<u8> {
    frames::udp4(Ipv4Addr::from(src), port).build()
}

fn tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
    frames::v4(Ipv4Addr::from(src), L4::Tcp(port)).build()
}

fn v6(src: &str, l4: L4, ext: Vec<(u8, usize)>, fragment: Option<u16>) -> Vec<u8> {
    let mut frame = frames::v6(src.parse::<Ipv6Addr>().unwrap(), l4);
    if let L3::V6 {
        ext: e,
        fragment: f,
        ..
    } = &mut frame.l3
    {
        *e = ext;
        *f = fragment;
    }
    frame.build()
}

#[test]
fn hand_built_frames_get_the_expected_reasons() {
    use Reason::*;
    let arp = Frame {
        vlans: vec![],
        l3: L3::Other(frames::ETH_P_ARP, vec![0; 28]),
        payload: 0,
    };
    let three_tags = frames::udp4(Ipv4Addr::new(198, 18, 0, 1), 53).vlan(&[0x8100, 0x88a8, 0x8100]);
    let mut ihl15 = frames::udp4(Ipv4Addr::new(198, 18, 0, 9), 22);
    if let L3::V4 { ihl, .. } = &mut ihl15.l3 {
        *ihl = 15;
    }
    let mut fragment = frames::udp4(Ipv4Addr::new(198, 18, 0, 10), 22);
    if let L3::V4 { frag_offset, .. } = &mut fragment.l3 {
        *frag_offset = 7;
    }
    let mapped = frames::v6("::ffff:198.51.100.1".parse().unwrap(), L4::Udp(22));
    // The transport header starts right at the end of the frame: found, but without a port.
    let mut cut_at_transport = v6("2001:db8:9::3", L4::Udp(53), vec![(0, 8)], None);
    cut_at_transport.truncate(14 + 40 + 8);

    let mut ports = Cases::new("ports");
    ports.add(PassNotIp, arp.build()); // ARP
    ports.add(PassNotIp, three_tags.build()); // three VLAN tags
    ports.add(PassMalformed, udp4([198, 18, 0, 1], 53)[..30].to_vec()); // cut in the IPv4 header
    ports.add(PassAllowed, udp4([192, 0, 2, 7], 53)); // allowed, also banned
    ports.add(PassAllowed, udp4([198, 51, 100, 200], 53)); // allowed inside the deny list
    ports.add(DropDenied, udp4([198, 51, 100, 9], 53)); // denied, also banned
    ports.add(DropDenied, udp4([100, 65, 1, 1], 22)); // denied by a v4-mapped IPv6 network
    ports.add(PassMalformed, mapped.build()); // a v4-mapped IPv6 source is no source
    ports.add(DropBanned, udp4([203, 0, 113, 10], 22)); // banned

    // 203.0.113.85: expired /28 and /26 over the /24 in force. The lookup deletes both expired
    // bans and finds the one in force for the first packet already.
    ports.add(DropBanned, udp4([203, 0, 113, 85], 22)); // behind two expired bans
    ports.add(DropBanned, udp4([203, 0, 113, 85], 22)); // their ban, directly now
    ports.add(PassUnprotected, udp4([172, 16, 1, 1], 22)); // under expired bans only
    ports.add(PassUnprotected, udp4([198, 18, 0, 2], 22)); // unprotected port
    ports.add(PassUnprotected, ihl15.build()); // IHL 15, unprotected port
    ports.add(PassWithinLimit, fragment.build()); // UDP non-first fragment
    ports.add(PassWithinLimit, udp4([198, 18, 0, 3], 53)); // protected, 1
    ports.add(PassWithinLimit, tcp4([198, 18, 0, 3], 8050)); // protected, 2
    ports.add(PassWithinLimit, udp4([198, 18, 0, 3], 9000)); // protected, 3
    ports.add(DropRateLimited, udp4([198, 18, 0, 3], 53)); // over the burst of 3
    ports.add(PassUnprotected, udp4([198, 18, 0, 3], 22)); // over budget, unprotected port
                                                           // Segments of a connection are never charged, even for a source over budget: they pass
                                                           // when the kernel knows their connection, and the rig's frames name none, so they drop.
    let segment = |src: [u8; 4], port, flags| {
        frames::v4(Ipv4Addr::from(src), L4::TcpFlags(port, flags)).build()
    };
    ports.add(DropNoFlow, segment([198, 18, 0, 3], 443, 0x10)); // ACK, source over budget
    ports.add(DropNoFlow, segment([198, 18, 0, 4], 8000, 0x18)); // PSH+ACK
    ports.add(DropNoFlow, segment([198, 18, 0, 4], 8000, 0x12)); // SYN+ACK
    ports.add(DropNoFlow, segment([198, 18, 0, 4], 8000, 0x04)); // RST
    ports.add(PassUnprotected, segment([198, 18, 0, 4], 22, 0x10)); // unprotected port
    ports.add(DropBanned, segment([203, 0, 113, 10], 443, 0x10)); // a ban holds flows too
    ports.add(PassAllowed, segment([192, 0, 2, 7], 443, 0x10)); // allowed
    ports.add(PassWithinLimit, segment([198, 18, 0, 4], 8000, 0)); // no flags: charged
    let ack6 = v6("2001:db8:9::4", L4::TcpFlags(443, 0x10), vec![], None);
    ports.add(DropNoFlow, ack6); // IPv6 ACK

    // Seven destination-options headers: one more than the parser walks.
    let hidden = v6("2001:db8:5:1::1", L4::Udp(22), vec![(60, 8); 7], None);
    ports.add(PassWithinLimit, hidden); // hidden transport
    let deep = v6("2001:db8:9::1", L4::Tcp(443), vec![(60, 24); 5], None);
    ports.add(PassWithinLimit, deep); // port behind five headers
    let first = v6("2001:db8:9::2", L4::Udp(22), vec![], Some(0));
    ports.add(PassUnprotected, first); // first fragment, its port
    ports.add(PassWithinLimit, cut_at_transport); // cut at the transport header
    ports.check();

    // Burst 1 on UDP 53: 203.0.113.100 sits under expired /32, /31, /27 and /26 bans and the
    // /24 in force. No packet gets past the ban check: the first one's lookups delete the four
    // expired bans and find the one in force, so the limiter never sees the source.
    let mut udp = Cases::new("udp_only");
    udp.add(DropBanned, udp4([203, 0, 113, 100], 53)); // four expired bans deep
    udp.add(DropBanned, udp4([203, 0, 113, 100], 53)); // the ban, directly now
    udp.add(DropBanned, udp4([203, 0, 113, 100], 22)); // unprotected port: the ban
    udp.add(PassUnprotected, tcp4([198, 18, 0, 3], 443)); // TCP is unprotected
    let a = v6("2001:db8:5:1::1", L4::Udp(53), vec![], None);
    let b = v6("2001:db8:5:1::2", L4::Udp(53), vec![], None);
    udp.add(PassWithinLimit, a.clone()); // IPv6 source, /128 key
    udp.add(PassWithinLimit, b); // its neighbour, another key
    udp.add(DropRateLimited, a); // the first again
    udp.check();

    let mut dry = Cases::new("tcp_dry_run");
    dry.add(DryRunDenied, udp4([198, 51, 100, 1], 22)); // denied
    dry.add(DryRunBanned, udp4([203, 0, 113, 1], 22)); // banned
    dry.add(PassWithinLimit, tcp4([198, 18, 0, 3], 443)); // 1
    dry.add(PassWithinLimit, tcp4([198, 18, 0, 3], 443)); // 2
    dry.add(DryRunRateLimited, tcp4([198, 18, 0, 3], 443)); // 3
    let ack = frames::v4(Ipv4Addr::new(198, 18, 0, 3), L4::TcpFlags(443, 0x10)).build();
    dry.add(DryRunNoFlow, ack); // a segment of no connection

    // No UDP port is protected, yet a hidden transport is limited because TCP ports are.
    let hidden = |src| v6(src, L4::Udp(22), vec![], Some(5));
    dry.add(PassWithinLimit, hidden("2001:db8:5:1::9")); // hidden, a /56
    dry.add(PassWithinLimit, hidden("2001:db8:5:2::9")); // hidden, the same /56
    dry.add(DryRunRateLimited, hidden("2001:db8:5:3::9")); // over the /56's burst
    dry.check();

    // The verdict cache is keyed by the 16-byte source, IPv4 mapped. A flood of v4-mapped IPv6
    // packets would share the IPv4 source's entry; they are malformed instead, so it stays
    // untouched however many arrive.
    let mut all = Cases::new("protect_all");
    let twin = |d| v6(&format!("::ffff:198.18.7.{d}"), L4::Udp(22), vec![], None);
    for _ in 0..6 {
        all.add(PassMalformed, twin(7));
    }
    for _ in 0..4 {
        all.add(PassWithinLimit, udp4([198, 18, 7, 7], 22)); // its own burst of 4, whole
    }
    all.add(DropRateLimited, udp4([198, 18, 7, 7], 22)); // over it
    all.check();

    let mut unprotected = Cases::new("unprotected");
    unprotected.add(PassUnprotected, hidden("2001:db8:5:1::1")); // hidden transport
    unprotected.check();

    let mut disabled = Cases::new("disabled");
    disabled.add(PassDisabled, udp4([198, 51, 100, 1], 22)); // denied source
    disabled.check();
}
