//! The XDP program's per-source limiter through BPF_PROG_TEST_RUN (loaded, never attached):
//! the burst, IPv6 prefixes sharing a budget, fragments, the insertion budget that keeps a
//! spoofed flood from evicting real clients, the per-CPU verdict cache, and extension-header
//! chains that must not get around it.

use crate::support;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use api_shield::{
    config,
    fastpath::{self, apply_config, SystemClock},
};
use api_shield_common::Reason;
use support::{
    frames::{self, L3, L4},
    prog_test::{Harness, BASE, SRC, SRC6, XDP_DROP, XDP_PASS},
};

#[test]
fn limiter_allows_the_burst_then_drops_only_protected_traffic() {
    let Some(h) = Harness::new(
        "limiter_allows_the_burst_then_drops_only_protected_traffic",
        BASE,
    ) else {
        return;
    };
    let verdicts: Vec<u32> = (0..8)
        .map(|_| h.run_frame(&frames::udp4(SRC, 9000)))
        .collect();
    assert_eq!(
        verdicts,
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP]
    );
    // The same source to an unprotected port, or by another protocol, is untouched.
    for _ in 0..10 {
        assert_eq!(h.run_frame(&frames::udp4(SRC, 22)), XDP_PASS);
        assert_eq!(h.run_frame(&frames::v4(SRC, L4::Tcp(22))), XDP_PASS);
        assert_eq!(h.run_frame(&frames::v4(SRC, L4::Icmp)), XDP_PASS);
    }
    // TCP 9000 is protected too and shares the source's budget.
    assert_eq!(h.run_frame(&frames::v4(SRC, L4::Tcp(9000))), XDP_DROP);
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::PassWithinLimit), 5);
    assert_eq!(stats.packets(Reason::DropRateLimited), 4);
    assert_eq!(stats.packets(Reason::PassUnprotected), 30);
}

#[test]
fn ipv6_sources_share_a_budget_per_prefix() {
    let Some(h) = Harness::new("ipv6_sources_share_a_budget_per_prefix", BASE) else {
        return;
    };
    let same_64: Vec<Ipv6Addr> = (1..=6)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 7, 1, 0, 0, 0, i))
        .collect();
    let verdicts: Vec<u32> = same_64
        .iter()
        .map(|a| h.run_frame(&frames::v6(*a, L4::Udp(9000))))
        .collect();
    assert_eq!(verdicts[..5], [XDP_PASS; 5]);
    assert_eq!(
        verdicts[5], XDP_DROP,
        "the sixth address of one /64 is over the shared budget"
    );
    let other_64 = Ipv6Addr::new(0x2001, 0xdb8, 7, 2, 0, 0, 0, 1);
    assert_eq!(h.run_frame(&frames::v6(other_64, L4::Udp(9000))), XDP_PASS);
}

#[test]
fn fragments_without_ports_count_against_the_source() {
    let Some(h) = Harness::new("fragments_without_ports_count_against_the_source", BASE) else {
        return;
    };
    let mut frag = frames::udp4(SRC, 22);
    if let L3::V4 { frag_offset, .. } = &mut frag.l3 {
        *frag_offset = 100;
    }
    let verdicts: Vec<u32> = (0..6).map(|_| h.run_frame(&frag)).collect();
    assert_eq!(verdicts[..5], [XDP_PASS; 5]);
    assert_eq!(
        verdicts[5], XDP_DROP,
        "non-first fragments of a protected protocol are limited"
    );
    let mut frag6 = frames::v6(SRC6, L4::Udp(22));
    if let L3::V6 { fragment, .. } = &mut frag6.l3 {
        *fragment = Some(10);
    }
    let verdicts: Vec<u32> = (0..6).map(|_| h.run_frame(&frag6)).collect();
    assert_eq!(verdicts[5], XDP_DROP);
    // A first fragment carries its port: port 22 is unprotected.
    let mut first6 = frames::v6(Ipv6Addr::new(0x2001, 0xdb8, 6, 0, 0, 0, 0, 1), L4::Udp(22));
    if let L3::V6 { fragment, .. } = &mut first6.l3 {
        *fragment = Some(0);
    }
    assert_eq!(h.run_frame(&first6), XDP_PASS);
    assert_eq!(h.stats().packets(Reason::PassUnprotected), 1);
}

/// `BASE` with `new_sources` tracked per CPU per second and untracked sources sharing a burst
/// of 3 (per class of packet), regaining one packet a second.
fn untracked_limits(new_sources: u32) -> String {
    BASE.replace(
        "burst = 5\n",
        &format!(
            "burst = 5\nnew_sources_per_cpu = {new_sources}\nuntracked_rate = 1\nuntracked_burst = 3\n"
        ),
    )
}

/// The `i`-th spoofed source, in 100.64.0.0/16.
fn spoofed(i: u32) -> Ipv4Addr {
    let [a, b] = (i as u16).to_be_bytes();
    Ipv4Addr::new(100, 64, a, b)
}

#[test]
fn a_datagram_flood_from_untracked_sources_leaves_new_tcp_clients_their_budget() {
    // No new source is tracked.
    let Some(h) = Harness::new(
        "a_datagram_flood_from_untracked_sources_leaves_new_tcp_clients_their_budget",
        &untracked_limits(0),
    ) else {
        return;
    };
    // 100 spoofed packets that start no connection, datagrams and TCP segments without flags or
    // with SYN and FIN, spend the budget of the rest: 3 pass, 97 are dropped.
    let floods: Vec<u32> = (0..100u32)
        .map(|i| {
            let l4 = match i % 3 {
                0 => L4::Udp(9000),
                1 => L4::TcpFlags(9000, 0x00),
                _ => L4::TcpFlags(9000, 0x03),
            };
            h.run_frame(&frames::v4(spoofed(i), l4))
        })
        .collect();
    assert_eq!(floods.iter().filter(|v| **v == XDP_PASS).count(), 3);
    assert_eq!(h.stats().packets(Reason::DropUntracked), 97);
    // SYNs from never-seen sources find their own budget whole (no listener here answers them
    // with a cookie): 3 pass, the next is dropped.
    let syns: Vec<u32> = (1000..1004u32)
        .map(|i| h.run_frame(&frames::v4(spoofed(i), L4::Tcp(9000))))
        .collect();
    assert_eq!(syns, [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP]);
    // And the datagrams' budget is still spent.
    assert_eq!(h.run_frame(&frames::udp4(spoofed(2000), 9000)), XDP_DROP);
    assert_eq!(h.stats().packets(Reason::DropUntracked), 99);
}

#[test]
fn spoofed_flood_cannot_evict_a_tracked_client() {
    // Ten new sources per second on this CPU; untracked sources share a burst of 3.
    let text = untracked_limits(10);
    let Some(h) = Harness::new("spoofed_flood_cannot_evict_a_tracked_client", &text) else {
        return;
    };
    // The real client spends its burst and is being limited.
    let verdicts: Vec<u32> = (0..6)
        .map(|_| h.run_frame(&frames::udp4(SRC, 9000)))
        .collect();
    assert_eq!(verdicts[5], XDP_DROP);
    // 500 spoofed sources, one packet each: 9 get tracked, 3 pass on the shared budget, the
    // rest are dropped as untracked.
    let spoofed: Vec<u32> = (0..500u32)
        .map(|i| h.run_frame(&frames::udp4(spoofed(i), 9000)))
        .collect();
    assert_eq!(spoofed.iter().filter(|v| **v == XDP_PASS).count(), 12);
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::DropUntracked), 488);
    // The client's state survived: it is still over budget, not handed a fresh burst.
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_DROP);
    let key = api_shield_common::v4_mapped(SRC.octets());
    assert!(
        h.maps.limiter.get(&key, 0).is_ok(),
        "the client's limiter entry is still there"
    );
}

#[test]
fn cached_over_budget_verdicts_follow_rule_changes() {
    let Some(mut h) = Harness::new("cached_over_budget_verdicts_follow_rule_changes", BASE) else {
        return;
    };
    // Spend the burst: from the sixth packet on, the verdict comes from the cache.
    for _ in 0..8 {
        h.run_frame(&frames::udp4(SRC, 9000));
    }
    assert_eq!(h.stats().packets(Reason::DropRateLimited), 3);
    // The cache holds rate-limit verdicts for protected traffic only.
    assert_eq!(h.run_frame(&frames::udp4(SRC, 22)), XDP_PASS);
    // A ban voids the cache: the source is now counted as banned.
    h.ban("203.0.113.10", Duration::from_secs(600), &SystemClock);
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_DROP);
    assert_eq!(h.stats().packets(Reason::DropBanned), 1);
    h.maps
        .unban(&fastpath::parse_target("203.0.113.10").unwrap())
        .unwrap();
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_DROP);
    assert_eq!(h.stats().packets(Reason::DropRateLimited), 4);
    // Allowing the source voids the cache too: it passes at once.
    let allowed = config::parse(
        &BASE.replace("\"192.0.2.0/24\"", "\"192.0.2.0/24\", \"203.0.113.10/32\""),
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    apply_config(&mut h.maps, &allowed.fastpath).unwrap();
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_PASS);
    assert_eq!(h.stats().packets(Reason::PassAllowed), 1);
}

#[test]
fn cached_deny_verdicts_count_per_list_and_end_with_the_entry() {
    let Some(mut h) = Harness::new(
        "cached_deny_verdicts_count_per_list_and_end_with_the_entry",
        &BASE.replace(
            "\"198.51.100.0/24\"",
            "\"198.51.100.0/24\", \"203.0.113.10/32\"",
        ),
    ) else {
        return;
    };
    // The first packet walks the lookups and caches the verdict; the others come from the
    // cache, on any port, and are counted against the list all the same.
    for port in [9000, 22, 9000, 53, 9000] {
        assert_eq!(h.run_frame(&frames::udp4(SRC, port)), XDP_DROP);
    }
    assert_eq!(h.stats().packets(Reason::DropDenied), 5);
    let lists = h.maps.list_stats().unwrap();
    let deny = lists.iter().find(|l| l.list == "deny").unwrap();
    assert_eq!(deny.packets, 5, "{lists:?}");
    // Taking the address off the list voids the cache: it passes at once.
    let without = config::parse(BASE, std::path::Path::new("test.toml")).unwrap();
    apply_config(&mut h.maps, &without.fastpath).unwrap();
    assert_eq!(h.run_frame(&frames::udp4(SRC, 22)), XDP_PASS);
    assert_eq!(h.stats().packets(Reason::DropDenied), 5);
}

#[test]
fn cached_verdicts_expire_when_the_source_may_conform_again() {
    // 20 packets/s, burst 1, nanosecond clock: after a drop the source conforms again within
    // 50 ms, and the cache must not hold it back longer.
    let text = BASE.replace(
        "rate = 1\nburst = 5\n",
        "rate = 20\nburst = 1\nclock = \"precise\"\n",
    );
    let Some(h) = Harness::new(
        "cached_verdicts_expire_when_the_source_may_conform_again",
        &text,
    ) else {
        return;
    };
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_PASS);
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_DROP);
    assert_eq!(
        h.run_frame(&frames::udp4(SRC, 9000)),
        XDP_DROP,
        "served from the cache"
    );
    // Time under test, not synchronisation: wait out one emission interval.
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_PASS);
    assert_eq!(h.run_frame(&frames::udp4(SRC, 9000)), XDP_DROP);
    let stats = h.stats();
    assert_eq!(stats.packets(Reason::PassWithinLimit), 2);
    assert_eq!(stats.packets(Reason::DropRateLimited), 3);
}

#[test]
fn extension_header_chains_are_no_way_around_the_limiter() {
    let Some(h) = Harness::new(
        "extension_header_chains_are_no_way_around_the_limiter",
        BASE,
    ) else {
        return;
    };
    // Seven destination-options headers: more than the parser walks, so the transport is hidden.
    let mut frame = frames::v6(SRC6, L4::Udp(9000));
    if let L3::V6 { ext, .. } = &mut frame.l3 {
        *ext = vec![(60, 8); 7];
    }
    let verdicts: Vec<u32> = (0..6).map(|_| h.run_frame(&frame)).collect();
    assert_eq!(verdicts[..5], [XDP_PASS; 5]);
    assert_eq!(
        verdicts[5], XDP_DROP,
        "a hidden transport counts against the source"
    );
    // A non-first fragment behind a destination-options header: limited too.
    let mut fragment = frames::v6(
        Ipv6Addr::new(0x2001, 0xdb8, 0x6, 1, 0, 0, 0, 1),
        L4::Udp(22),
    );
    if let L3::V6 {
        ext, fragment: f, ..
    } = &mut fragment.l3
    {
        *ext = vec![(60, 8)];
        *f = Some(3);
    }
    let verdicts: Vec<u32> = (0..6).map(|_| h.run_frame(&fragment)).collect();
    assert_eq!(verdicts[5], XDP_DROP);
}

#[test]
fn an_allowed_address_passes_while_its_ipv6_prefix_floods() {
    let text = BASE.replace(
        "\"2001:db8:a::/48\"",
        "\"2001:db8:a::/48\", \"2001:db8:5:1::10/128\"",
    );
    let Some(h) = Harness::new(
        "an_allowed_address_passes_while_its_ipv6_prefix_floods",
        &text,
    ) else {
        return;
    };
    // A neighbour in the same /64 spends the prefix's budget (its verdict gets cached)...
    let neighbour = Ipv6Addr::new(0x2001, 0xdb8, 5, 1, 0, 0, 0, 0x99);
    for _ in 0..8 {
        h.run_frame(&frames::v6(neighbour, L4::Udp(9000)));
    }
    assert_eq!(h.run_frame(&frames::v6(neighbour, L4::Udp(9000))), XDP_DROP);
    // ...and the allowed address of that /64 still passes.
    let allowed = Ipv6Addr::new(0x2001, 0xdb8, 5, 1, 0, 0, 0, 0x10);
    assert_eq!(h.run_frame(&frames::v6(allowed, L4::Udp(9000))), XDP_PASS);
    assert_eq!(h.stats().packets(Reason::PassAllowed), 1);
}
