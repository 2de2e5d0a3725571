//! The XDP program run on hand-built frames through BPF_PROG_TEST_RUN (loaded, never attached):
//! every decision path, IPv4 and IPv6, VLAN tags, IPv4 options and IPv6 extension headers,
//! truncated and malformed frames, dry run, and drop events. The limiter's paths are
//! `xdp_limiter`'s.

use crate::support;

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use api_shield::fastpath::{Clock, SystemClock};
use api_shield_common::{maps, Reason};
use aya::maps::RingBuf;
use support::{
    frames::{self, Frame, L3, L4},
    prog_test::{Harness, BASE, SRC, SRC6, XDP_DROP, XDP_PASS},
};

#[test]
fn non_ip_frames_pass_and_are_counted() {
    let Some(h) = Harness::new("non_ip_frames_pass_and_are_counted", BASE) else {
        return;
    };
    let arp = Frame {
        vlans: vec![],
        l3: L3::Other(frames::ETH_P_ARP, vec![0u8; 28]),
        payload: 0,
    };
    let bytes = arp.build();
    assert_eq!(h.run(&bytes), XDP_PASS);
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::PassNotIp), 1);
    assert_eq!(
        stats.counters[Reason::PassNotIp as usize].bytes,
        bytes.len() as u64
    );
}

#[test]
fn truncated_and_malformed_frames_pass_as_malformed() {
    let Some(h) = Harness::new("truncated_and_malformed_frames_pass_as_malformed", BASE) else {
        return;
    };
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // Every cut of an IPv4 and an IPv6 frame inside the Ethernet, VLAN or IP header.
    let v4 = frames::udp4(SRC, 9000)
        .vlan(&[frames::ETH_P_8021AD, frames::ETH_P_8021Q])
        .build();
    for len in 14..(22 + 20) {
        cases.push(v4[..len].to_vec());
    }
    let v6 = frames::v6(SRC6, L4::Udp(9000)).build();
    for len in 14..(14 + 40) {
        cases.push(v6[..len].to_vec());
    }
    // Wrong IP version, IHL below 5, options promised but missing.
    let mut bad_version = frames::udp4(SRC, 9000).build();
    bad_version[14] = 0x65;
    cases.push(bad_version);
    let mut short_ihl = frames::udp4(SRC, 9000).build();
    short_ihl[14] = 0x43;
    cases.push(short_ihl);
    let mut missing_options = frames::udp4(SRC, 9000).build();
    missing_options[14] = 0x4f;
    missing_options.truncate(14 + 40);
    cases.push(missing_options);
    let mut v6_claims_v4 = frames::v6(SRC6, L4::Udp(9000)).build();
    v6_claims_v4[14] = 0x40;
    cases.push(v6_claims_v4);
    for (i, frame) in cases.iter().enumerate() {
        assert_eq!(h.run(frame), XDP_PASS, "case {i} ({} bytes)", frame.len());
    }
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::PassMalformed), cases.len() as u64);
    assert_eq!(
        stats.counters.iter().map(|c| c.packets).sum::<u64>(),
        cases.len() as u64
    );
}

#[test]
fn random_bytes_never_abort_the_program() {
    let Some(h) = Harness::new("random_bytes_never_abort_the_program", BASE) else {
        return;
    };
    // A fixed-seed xorshift: reproducible garbage, with EtherTypes that reach the IP parsers.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let types = [
        frames::ETH_P_IP,
        frames::ETH_P_IPV6,
        frames::ETH_P_8021Q,
        frames::ETH_P_8021AD,
    ];
    for i in 0..3000u64 {
        let len = 14 + (next() % 200) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        frame[12..14].copy_from_slice(&types[(i % 4) as usize].to_be_bytes());
        if i % 3 == 0 && len > 15 {
            frame[14] = if i % 2 == 0 { 0x45 } else { 0x60 };
        }
        let verdict = h.run(&frame);
        assert!(
            verdict == XDP_PASS || verdict == XDP_DROP,
            "frame {i}: verdict {verdict}"
        );
    }
    assert_eq!(
        h.stats().counters.iter().map(|c| c.packets).sum::<u64>(),
        3000
    );
}

#[test]
fn allow_beats_deny_and_ban_and_deny_drops() {
    let Some(mut h) = Harness::new("allow_beats_deny_and_ban_and_deny_drops", BASE) else {
        return;
    };
    h.ban("192.0.2.7", Duration::from_secs(600), &SystemClock);
    h.ban("198.51.100.0/24", Duration::from_secs(600), &SystemClock);
    for _ in 0..20 {
        assert_eq!(
            h.run_frame(&frames::udp4(Ipv4Addr::new(192, 0, 2, 7), 9000)),
            XDP_PASS
        );
    }
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(198, 51, 100, 9), 22)),
        XDP_DROP
    );
    let a6: Ipv6Addr = "2001:db8:a:1::5".parse().unwrap();
    let d6: Ipv6Addr = "2001:db8:d:1::5".parse().unwrap();
    assert_eq!(h.run_frame(&frames::v6(a6, L4::Udp(9000))), XDP_PASS);
    assert_eq!(h.run_frame(&frames::v6(d6, L4::Udp(9000))), XDP_DROP);
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::PassAllowed), 21);
    assert_eq!(stats.packets(Reason::DropDenied), 2);
    assert_eq!(
        stats.packets(Reason::DropBanned),
        0,
        "deny is checked before bans"
    );
}

#[test]
fn bans_drop_every_port_until_they_expire() {
    let Some(mut h) = Harness::new("bans_drop_every_port_until_they_expire", BASE) else {
        return;
    };
    h.ban("203.0.113.10", Duration::from_secs(600), &SystemClock);
    h.ban("2001:db8:5::/48", Duration::from_secs(600), &SystemClock);
    assert_eq!(h.run_frame(&frames::udp4(SRC, 22)), XDP_DROP);
    assert_eq!(h.run_frame(&frames::v4(SRC, L4::Tcp(9000))), XDP_DROP);
    assert_eq!(h.run_frame(&frames::v4(SRC, L4::Icmp)), XDP_DROP);
    assert_eq!(h.run_frame(&frames::v6(SRC6, L4::Tcp(443))), XDP_DROP);
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(203, 0, 113, 11), 22)),
        XDP_PASS
    );
    assert_eq!(h.stats().packets(Reason::DropBanned), 4);

    // A ban whose monotonic expiry has passed no longer drops: ban "two seconds ago" for 1 s.
    // (Two seconds, not more: the monotonic clock starts at boot, and a machine booted a
    // minute ago must pass this test too.)
    let past = PastClock(Duration::from_secs(2));
    h.ban("203.0.113.20", Duration::from_secs(1), &past);
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(203, 0, 113, 20), 22)),
        XDP_PASS
    );
    assert_eq!(h.stats().packets(Reason::DropBanned), 4);
    assert!(h
        .maps
        .bans(&SystemClock)
        .unwrap()
        .iter()
        .all(|b| b.target != "203.0.113.20/32"));
    // The program deleted the expired entry it met, so the sweep finds nothing left.
    assert_eq!(h.maps.sweep_expired_bans(&SystemClock).unwrap(), 0);

    // An expired narrow ban must not hide a broader one in force.
    h.ban("198.18.0.0/16", Duration::from_secs(600), &SystemClock);
    h.ban("198.18.7.7", Duration::from_secs(1), &past);
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(198, 18, 7, 7), 22)),
        XDP_DROP
    );
    assert_eq!(h.stats().packets(Reason::DropBanned), 5);
}

/// The real clocks, shifted into the past.
struct PastClock(Duration);

impl Clock for PastClock {
    fn monotonic_ns(&self) -> u64 {
        // Saturating: a clock shifted to before boot stays at boot, and a 1 s ban made then
        // has still expired by the time a test runs.
        SystemClock
            .monotonic_ns()
            .saturating_sub(self.0.as_nanos() as u64)
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now() - self.0
    }
}

#[test]
fn vlan_tags_options_and_extension_headers_are_seen_through() {
    let Some(mut h) = Harness::new(
        "vlan_tags_options_and_extension_headers_are_seen_through",
        BASE,
    ) else {
        return;
    };
    h.ban("203.0.113.10", Duration::from_secs(600), &SystemClock);
    for tags in [
        &[frames::ETH_P_8021Q][..],
        &[frames::ETH_P_8021AD, frames::ETH_P_8021Q],
    ] {
        assert_eq!(
            h.run_frame(&frames::udp4(SRC, 22).vlan(tags)),
            XDP_DROP,
            "tags {tags:x?}"
        );
        let v6 = frames::v6(
            Ipv6Addr::new(0x2001, 0xdb8, 0xd, 0, 0, 0, 0, 1),
            L4::Udp(22),
        )
        .vlan(tags);
        assert_eq!(h.run_frame(&v6), XDP_DROP, "denied IPv6 behind {tags:x?}");
    }
    // IPv4 options (IHL 6 and 15) and IPv6 extension headers still expose the port.
    let src = Ipv4Addr::new(203, 0, 113, 50);
    for ihl in [6u8, 15] {
        let mut frame = frames::udp4(src, 22);
        if let L3::V4 { ihl: h_ihl, .. } = &mut frame.l3 {
            *h_ihl = ihl;
        }
        assert_eq!(h.run_frame(&frame), XDP_PASS);
    }
    let mut ext = frames::v6(Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 1), L4::Udp(22));
    if let L3::V6 { ext: e, .. } = &mut ext.l3 {
        *e = vec![(0, 8), (60, 16), (43, 24)];
    }
    assert_eq!(h.run_frame(&ext), XDP_PASS);
    let stats = h.stats();
    assert_eq!(
        stats.packets(Reason::PassUnprotected),
        3,
        "port 22 was found behind options and extensions"
    );
    // A protected port behind extension headers is limited like any other.
    let mut limited = ext.clone();
    if let L3::V6 { l4, .. } = &mut limited.l3 {
        *l4 = L4::Udp(9000);
    }
    let verdicts: Vec<u32> = (0..6).map(|_| h.run_frame(&limited)).collect();
    assert_eq!(verdicts[5], XDP_DROP);
}

#[test]
fn dry_run_counts_what_it_would_drop_and_drops_nothing() {
    let text = BASE.replace("[fastpath]\n", "[fastpath]\ndry_run = true\n");
    let Some(mut h) = Harness::new("dry_run_counts_what_it_would_drop_and_drops_nothing", &text)
    else {
        return;
    };
    h.ban("203.0.113.77", Duration::from_secs(600), &SystemClock);
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(198, 51, 100, 1), 22)),
        XDP_PASS
    );
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(203, 0, 113, 77), 22)),
        XDP_PASS
    );
    for _ in 0..8 {
        assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_PASS);
    }
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::DryRunDenied), 1);
    assert_eq!(stats.packets(Reason::DryRunBanned), 1);
    assert_eq!(stats.packets(Reason::DryRunRateLimited), 3);
    assert_eq!(stats.packets(Reason::PassWithinLimit), 5);
    for reason in [
        Reason::DropDenied,
        Reason::DropBanned,
        Reason::DropRateLimited,
        Reason::DropUntracked,
    ] {
        assert_eq!(stats.packets(reason), 0);
    }
}

#[test]
fn disabled_program_passes_everything() {
    let text = BASE.to_owned();
    let Some(mut h) = Harness::new("disabled_program_passes_everything", &text) else {
        return;
    };
    h.maps
        .config
        .set(0, api_shield_common::ShieldConfig::default(), 0)
        .unwrap();
    assert_eq!(
        h.run_frame(&frames::udp4(Ipv4Addr::new(198, 51, 100, 1), 9000)),
        XDP_PASS
    );
    assert_eq!(h.stats().packets(Reason::PassDisabled), 1);
}

#[test]
fn one_drop_event_per_source_per_interval() {
    let Some(mut h) = Harness::new("one_drop_event_per_source_per_interval", BASE) else {
        return;
    };
    h.ban("203.0.113.10", Duration::from_secs(600), &SystemClock);
    let mut ring = RingBuf::try_from(h.ebpf.take_map(maps::EVENTS).unwrap()).unwrap();
    for _ in 0..50 {
        assert_eq!(h.run_frame(&frames::udp4(SRC, 22)), XDP_DROP);
    }
    let other = Ipv4Addr::new(203, 0, 113, 99);
    for _ in 0..10 {
        h.run_frame(&frames::udp4(other, 9000));
    }
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.push(fastpath_event(&item));
    }
    assert_eq!(
        events,
        vec![
            (IpAddr::V4(SRC), Some(Reason::DropBanned)),
            (IpAddr::V4(other), Some(Reason::DropRateLimited)),
        ]
    );
}

fn fastpath_event(bytes: &[u8]) -> (IpAddr, Option<Reason>) {
    let event = api_shield::fastpath::decode_event(bytes).expect("a whole event");
    (event.source, event.reason)
}

#[test]
fn the_ban_map_holds_as_many_bans_as_max_bans_says() {
    if !support::privileged::can_run("the_ban_map_holds_as_many_bans_as_max_bans_says", false) {
        return;
    }
    let pins = support::privileged::PinDir::new();
    let config = api_shield::config::parse(
        "[fastpath]\nmax_bans = 1024\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let _ebpf = api_shield::fastpath::load_program(&pins.layout(), &config.fastpath).unwrap();
    let mut maps = api_shield::fastpath::PinnedMaps::open(&pins.layout()).unwrap();
    let ban = |maps: &mut api_shield::fastpath::PinnedMaps, n: u32| {
        maps.ban(
            &api_shield::fastpath::BanRequest {
                target: ipnet::IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 + n,
                ))),
                ttl: None,
                reason: "test".into(),
                origin: None,
            },
            &SystemClock,
        )
    };
    for n in 0..1024 {
        ban(&mut maps, n).unwrap();
    }
    let error = ban(&mut maps, 1024).unwrap_err();
    assert!(
        matches!(
            error,
            api_shield::fastpath::FastpathError::BansFull { max: 1024 }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("fastpath.max_bans"), "{error}");
}

#[test]
fn the_deny_table_holds_as_many_rules_as_max_deny_says() {
    if !support::privileged::can_run("the_deny_table_holds_as_many_rules_as_max_deny_says", false) {
        return;
    }
    // More rules than the default table holds (16 384).
    let rules: Vec<String> = (0..20_000u32)
        .map(|n| format!("\"{}/32\"", std::net::Ipv4Addr::from(0x0a40_0000 + n)))
        .collect();
    let text = |max: &str| format!("[fastpath]\n{max}deny = [{}]\n", rules.join(", "));
    let refused = api_shield::config::parse(&text(""), std::path::Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("fastpath.deny") && refused.contains("fastpath.max_deny"),
        "{refused}"
    );
    let config =
        api_shield::config::parse(&text("max_deny = 32768\n"), std::path::Path::new("t.toml"))
            .unwrap();
    let pins = support::privileged::PinDir::new();
    let _ebpf = api_shield::fastpath::load_program(&pins.layout(), &config.fastpath).unwrap();
    let mut maps = api_shield::fastpath::PinnedMaps::open(&pins.layout()).unwrap();
    api_shield::fastpath::apply_config(&mut maps, &config.fastpath).unwrap();
    assert_eq!(maps.deny_keys().unwrap().len(), 20_000);
    // Single addresses are kept in the hash, networks in the trie.
    assert_eq!(
        maps.deny_exact.keys().filter_map(Result::ok).count(),
        20_000
    );
}
