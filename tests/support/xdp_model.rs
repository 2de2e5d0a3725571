//! A userspace model of the XDP program's decision for one frame, written from what
//! `api-shield-ebpf/src` documents: the differential test `tests/xdp_model.rs` and the fuzz
//! target `xtask/fuzz/fuzz_targets/xdp.rs` include this file by path and hold the program to it.
//!
//! Parsing: Ethernet; up to two VLAN tags (802.1Q or 802.1ad, the second peeled only behind the
//! first); IPv4 with any IHL (options must be present); IPv6 with a walk of at most six steps
//! over hop-by-hop, routing, destination-options, fragment and authentication headers, giving up
//! past byte 512. A frame cut inside the Ethernet/VLAN or IP header, or with a wrong IP version
//! or an IHL below 5, is malformed; another EtherType is not IP.
//!
//! Decision: a cached deny verdict for the exact source drops, and a cached over-budget one
//! (protected traffic that starts work only); allow passes; deny drops; a ban in force drops (an expired ban met on the
//! way is deleted and the lookup made once more); unprotected traffic passes; a TCP segment
//! other than a bare SYN (its 20-byte header read whole, flags not all zero) belongs to no
//! connection and drops (`DropNoFlow`: the rig's frames name no socket of its network
//! namespace); otherwise the limiter decides. A SYN is never answered with a SYN cookie
//! (`AnswerSynCookie`, `XDP_TX`): the answer needs a listener on the SYN's port whose SYN queue
//! is full, and no frame of the rig names one (`tests/xdp_syncookies.rs` holds the answer with
//! real listeners). In dry run every drop is counted as its dry-run twin and passes.
//!
//! An IPv6 packet with an IPv4-mapped source (::ffff:0:0/96) is malformed: it would otherwise
//! pose as the IPv4 address in the maps (which hold IPv4 mapped) and share its verdict-cache
//! entry.
//!
//! The verdict cache is modelled as the program keeps it (`verdicts.rs`): one slot per hash of
//! the 16-byte source, IPv4 mapped.
//!
//! The limiter is modelled as a count, which holds because the rig makes timing irrelevant: the
//! emission interval it writes is a day, so within a run a limiter key passes exactly `burst`
//! packets and is over budget from then on; `new_sources_per_cpu` is far above any run, so every
//! new source is tracked and the shared untracked budget (`DropUntracked`) is never reached.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use api_shield_common::{maps::VERDICT_BITS, Reason};

/// One rule set the program is loaded with.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Name, for messages.
    pub name: &'static str,
    /// The `enabled` flag of the program's settings.
    pub enabled: bool,
    /// Count drops without dropping.
    pub dry_run: bool,
    /// The limiter applies to every IP packet.
    pub protect_all: bool,
    /// Protected TCP port ranges (inclusive).
    pub tcp: &'static [(u16, u16)],
    /// Protected UDP port ranges (inclusive).
    pub udp: &'static [(u16, u16)],
    /// Packets a limiter key may send within a run.
    pub burst: u32,
    /// IPv6 sources share a limiter key per prefix of this length.
    pub ipv6_prefix: u8,
    /// Allow list (CIDRs).
    pub allow: &'static [&'static str],
    /// Deny list (CIDRs).
    pub deny: &'static [&'static str],
    /// Bans: (CIDR, in force). A ban not in force has expired but is still in the map.
    pub bans: &'static [(&'static str, bool)],
}

/// Allow list of every profile: overlaps the deny list (allow wins) and holds an IPv6 network
/// inside the IPv4-mapped range, which the program matches against IPv4 sources.
const ALLOW: &[&str] = &[
    "192.0.2.0/24",
    "198.51.100.128/25",
    "::ffff:100.100.0.0/112",
    "2001:db8:a::/48",
    "2001:db8:d:8000::/49",
];

/// Deny list of every profile.
const DENY: &[&str] = &[
    "198.51.100.0/24",
    "203.0.113.200/29",
    "::ffff:100.64.0.0/106",
    "2001:db8:d::/48",
];

/// Bans of every profile: nested chains of expired bans over bans in force (the program looks
/// through `BAN_LOOKUPS - 1` expired levels per packet), and bans under allow and deny entries.
const BANS: &[(&str, bool)] = &[
    ("203.0.113.0/24", true),
    ("203.0.113.64/26", false),
    ("203.0.113.80/28", false),
    ("203.0.113.81/32", true),
    ("203.0.113.96/27", false),
    ("203.0.113.100/31", false),
    ("203.0.113.100/32", false),
    ("172.16.0.0/12", false),
    ("192.0.2.7/32", true),
    ("198.51.100.9/32", true),
    ("100.72.0.0/16", true),
    ("2001:db8:b::/48", true),
    ("2001:db8:b:1::/64", false),
    ("2001:db8:b:1::/96", false),
    ("2001:db8:b:1::1/128", true),
    ("2001:db8:a:5::/64", true),
    ("2001:db8:e::/48", false),
];

const NO_PORTS: &[(u16, u16)] = &[];

/// The profiles the program is tested under.
pub const PROFILES: [Rules; 6] = [
    Rules {
        name: "ports",
        enabled: true,
        dry_run: false,
        protect_all: false,
        tcp: &[(443, 443), (8000, 8100)],
        udp: &[(53, 53), (9000, 9000)],
        burst: 3,
        ipv6_prefix: 64,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
    Rules {
        name: "tcp_dry_run",
        enabled: true,
        dry_run: true,
        protect_all: false,
        tcp: &[(443, 443)],
        udp: NO_PORTS,
        burst: 2,
        ipv6_prefix: 56,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
    Rules {
        name: "udp_only",
        enabled: true,
        dry_run: false,
        protect_all: false,
        tcp: NO_PORTS,
        udp: &[(53, 53), (9000, 9000)],
        burst: 1,
        ipv6_prefix: 128,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
    Rules {
        name: "protect_all",
        enabled: true,
        dry_run: false,
        protect_all: true,
        tcp: &[(443, 443)],
        udp: NO_PORTS,
        burst: 4,
        ipv6_prefix: 48,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
    Rules {
        name: "unprotected",
        enabled: true,
        dry_run: false,
        protect_all: false,
        tcp: NO_PORTS,
        udp: NO_PORTS,
        burst: 1,
        ipv6_prefix: 64,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
    Rules {
        name: "disabled",
        enabled: false,
        dry_run: false,
        protect_all: false,
        tcp: &[(443, 443)],
        udp: &[(53, 53)],
        burst: 1,
        ipv6_prefix: 64,
        allow: ALLOW,
        deny: DENY,
        bans: BANS,
    },
];

/// A network in the 128-bit space the maps use (IPv4 as IPv4-mapped IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    /// Network address.
    pub addr: u128,
    /// Prefix length, 0..=128.
    pub len: u32,
}

impl Net {
    /// Parses `ADDR/LEN` (or an address), IPv4 into the mapped space.
    pub fn parse(text: &str) -> Net {
        let (addr, len) = text.split_once('/').unwrap_or((text, ""));
        let (addr, len) = match addr.parse::<Ipv4Addr>() {
            Ok(v4) => (mapped(v4), 96 + len.parse().unwrap_or(32)),
            Err(_) => (
                u128::from(addr.parse::<Ipv6Addr>().expect("a CIDR")),
                len.parse().unwrap_or(128),
            ),
        };
        Net {
            addr: addr & mask(len),
            len,
        }
    }

    /// Whether the network holds `addr`.
    pub fn contains(&self, addr: u128) -> bool {
        addr & mask(self.len) == self.addr
    }

    /// The last address of the network.
    pub fn last(&self) -> u128 {
        self.addr | !mask(self.len)
    }
}

/// The mask of a prefix length.
pub fn mask(len: u32) -> u128 {
    u128::MAX.checked_shl(128 - len).unwrap_or(0)
}

/// An IPv4 address in the mapped space.
pub fn mapped(v4: Ipv4Addr) -> u128 {
    u128::from(v4.to_ipv6_mapped())
}

/// What is known of the transport header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP or UDP destination port.
    Port(u16),
    /// No port: an IPv4 non-first fragment, a cut TCP/UDP header, or a protocol without ports.
    Unknown,
    /// IPv6 whose transport header was not reached (chain too long or too deep, cut, or a
    /// non-first fragment).
    Hidden,
}

/// The fields of an IP packet the decision reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source, IPv4 mapped.
    pub src: u128,
    /// IPv6 (the limiter groups IPv6 sources by prefix).
    pub v6: bool,
    /// Transport protocol; for IPv6 the last next-header seen.
    pub proto: u8,
    /// Destination port, if any.
    pub l4: L4,
    /// The TCP flags when the 20-byte TCP header is there whole, else 0.
    pub tcp_flags: u8,
}

impl Packet {
    /// A TCP segment of a connection (anything but a bare SYN), as `flow.rs` tells them.
    fn tcp_in_flow(&self) -> bool {
        self.proto == TCP
            && matches!(self.l4, L4::Port(_))
            && self.tcp_flags != 0
            && self.tcp_flags & 0x12 != 0x02
    }
}

/// Outcome of parsing a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4 or IPv6.
    NotIp,
    /// Cut or malformed up to and including the IP header.
    Malformed,
    /// An IP packet.
    Ip(Packet),
}

const TCP: u8 = 6;
const UDP: u8 = 17;

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
}

/// Parses a frame as the program does.
pub fn parse(frame: &[u8]) -> Parsed {
    let Some(mut ethertype) = be16(frame, 12) else {
        return Parsed::Malformed;
    };
    let mut l3 = 14;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        let Some(inner) = be16(frame, l3 + 2) else {
            return Parsed::Malformed;
        };
        ethertype = inner;
        l3 += 4;
    }
    match ethertype {
        0x0800 => parse_v4(frame, l3),
        0x86dd => parse_v6(frame, l3),
        _ => Parsed::NotIp,
    }
}

fn parse_v4(frame: &[u8], l3: usize) -> Parsed {
    let Some(h) = frame.get(l3..l3 + 20) else {
        return Parsed::Malformed;
    };
    let header_len = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || header_len < 20 || frame.len() < l3 + header_len {
        return Parsed::Malformed;
    }
    let src = mapped(Ipv4Addr::new(h[12], h[13], h[14], h[15]));
    let proto = h[9];
    let fragment_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
    let (l4, tcp_flags) = if fragment_offset != 0 {
        (L4::Unknown, 0)
    } else {
        ports(frame, proto, l3 + header_len)
    };
    Parsed::Ip(Packet {
        src,
        v6: false,
        proto,
        l4,
        tcp_flags,
    })
}

fn parse_v6(frame: &[u8], l3: usize) -> Parsed {
    let Some(h) = frame.get(l3..l3 + 40) else {
        return Parsed::Malformed;
    };
    if h[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let src = u128::from_be_bytes(h[8..24].try_into().unwrap());
    // An IPv4-mapped source is no IPv6 source: passed as malformed, reaching no rule.
    if src >> 32 == 0xffff {
        return Parsed::Malformed;
    }
    let mut next = h[6];
    let mut offset = l3 + 40;
    let mut found = false;
    for _ in 0..6 {
        if offset > 512 {
            break;
        }
        if !matches!(next, 0 | 43 | 44 | 51 | 60) {
            found = true;
            break;
        }
        let (Some(&nh), Some(&len)) = (frame.get(offset), frame.get(offset + 1)) else {
            break;
        };
        match next {
            // Hop-by-hop, routing, destination options: 8-octet units after the first 8.
            0 | 43 | 60 => offset += (usize::from(len) + 1) * 8,
            // Fragment: a non-first fragment hides the transport header.
            44 => {
                let Some(fragment) = be16(frame, offset + 2) else {
                    break;
                };
                if fragment >> 3 != 0 {
                    next = nh;
                    break;
                }
                offset += 8;
            }
            // Authentication header: 4-octet units after the first 2.
            _ => offset += (usize::from(len) + 2) * 4,
        }
        next = nh;
    }
    let (l4, tcp_flags) = if found {
        ports(frame, next, offset)
    } else {
        (L4::Hidden, 0)
    };
    Parsed::Ip(Packet {
        src,
        v6: true,
        proto: next,
        l4,
        tcp_flags,
    })
}

fn ports(frame: &[u8], proto: u8, offset: usize) -> (L4, u8) {
    match be16(frame, offset + 2) {
        Some(port) if proto == TCP => (
            L4::Port(port),
            frame
                .get(offset..offset + 20)
                .map_or(0, |header| header[13]),
        ),
        Some(port) if proto == UDP => (L4::Port(port), 0),
        _ => (L4::Unknown, 0),
    }
}

/// A ban as the model holds it.
#[derive(Clone, Debug)]
struct Ban {
    text: &'static str,
    net: Net,
    in_force: bool,
    /// Still in the map (the program deletes an expired ban it meets).
    present: bool,
}

/// The model: rules plus the state the program keeps between frames.
pub struct Model {
    rules: Rules,
    allow: Vec<Net>,
    deny: Vec<Net>,
    bans: Vec<Ban>,
    /// Packets passed per limiter key.
    passed: HashMap<u128, u32>,
    /// The verdict cache (`verdicts.rs`): per slot, the exact source the limiter last found over
    /// budget or a deny entry last matched, and which. Its entries outlive any run (they hold
    /// until the key may conform again, a day away, or for the drop-event interval, which the
    /// rig makes as long) and the rules generation never changes within one.
    cache: HashMap<u32, (u128, Cached)>,
}

impl Model {
    /// A model of the program freshly loaded with `rules`.
    pub fn new(rules: &Rules) -> Model {
        Model {
            rules: rules.clone(),
            allow: rules.allow.iter().map(|n| Net::parse(n)).collect(),
            deny: rules.deny.iter().map(|n| Net::parse(n)).collect(),
            bans: rules
                .bans
                .iter()
                .map(|(text, in_force)| Ban {
                    text,
                    net: Net::parse(text),
                    in_force: *in_force,
                    present: true,
                })
                .collect(),
            passed: HashMap::new(),
            cache: HashMap::new(),
        }
    }

    /// The reason the program counts `frame` under, updating the state as the program does.
    pub fn decide(&mut self, frame: &[u8]) -> Reason {
        if !self.rules.enabled {
            return Reason::PassDisabled;
        }
        let pkt = match parse(frame) {
            Parsed::NotIp => return Reason::PassNotIp,
            Parsed::Malformed => return Reason::PassMalformed,
            Parsed::Ip(pkt) => pkt,
        };
        let protected = self.protected(&pkt);
        let in_flow = pkt.tcp_in_flow();
        match self.cache.get(&slot(pkt.src)) {
            Some((src, Cached::Denied)) if *src == pkt.src => {
                return self.drop(Reason::DropDenied);
            }
            Some((src, Cached::OverBudget)) if *src == pkt.src && protected && !in_flow => {
                return self.drop(Reason::DropRateLimited);
            }
            _ => {}
        }
        if self.allow.iter().any(|n| n.contains(pkt.src)) {
            return Reason::PassAllowed;
        }
        if self.deny.iter().any(|n| n.contains(pkt.src)) {
            self.cache.insert(slot(pkt.src), (pkt.src, Cached::Denied));
            return self.drop(Reason::DropDenied);
        }
        if self.banned(pkt.src) {
            return self.drop(Reason::DropBanned);
        }
        if !protected {
            return Reason::PassUnprotected;
        }
        if in_flow {
            return self.drop(Reason::DropNoFlow);
        }
        let key = if pkt.v6 {
            pkt.src & mask(u32::from(self.rules.ipv6_prefix))
        } else {
            pkt.src
        };
        let passed = self.passed.entry(key).or_insert(0);
        if *passed < self.rules.burst {
            *passed += 1;
            Reason::PassWithinLimit
        } else {
            self.cache
                .insert(slot(pkt.src), (pkt.src, Cached::OverBudget));
            self.drop(Reason::DropRateLimited)
        }
    }

    /// The limiter keys the program has created (16 bytes each, as the map holds them).
    pub fn limiter_keys(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.passed.keys().map(|k| k.to_be_bytes())
    }

    /// The expired bans the program has deleted.
    pub fn deleted_bans(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.bans.iter().filter(|b| !b.present).map(|b| b.text)
    }

    fn drop(&self, reason: Reason) -> Reason {
        if self.rules.dry_run {
            reason.dry_run()
        } else {
            reason
        }
    }

    fn protected(&self, pkt: &Packet) -> bool {
        let rules = &self.rules;
        if rules.protect_all {
            return true;
        }
        if pkt.l4 == L4::Hidden {
            return !rules.tcp.is_empty() || !rules.udp.is_empty();
        }
        let ranges = match pkt.proto {
            TCP => rules.tcp,
            UDP => rules.udp,
            _ => return false,
        };
        match pkt.l4 {
            _ if ranges.is_empty() => false,
            L4::Port(port) => ranges.iter().any(|(a, b)| (*a..=*b).contains(&port)),
            L4::Unknown | L4::Hidden => true,
        }
    }

    /// The longest-prefix ban: in force drops; expired is deleted and the lookup made again, up
    /// to `BAN_LOOKUPS` times.
    fn banned(&mut self, src: u128) -> bool {
        for _ in 0..api_shield_common::maps::BAN_LOOKUPS {
            let Some(ban) = self
                .bans
                .iter_mut()
                .filter(|b| b.present && b.net.contains(src))
                .max_by_key(|b| b.net.len)
            else {
                return false;
            };
            if ban.in_force {
                return true;
            }
            ban.present = false;
        }
        false
    }
}

/// What a verdict-cache slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cached {
    OverBudget,
    Denied,
}

/// The verdict-cache slot of a source: Fibonacci hashing of its two 8-byte words (in memory
/// order) folded together, top bits.
fn slot(src: u128) -> u32 {
    let bytes = src.to_be_bytes();
    let hi = u64::from_ne_bytes(bytes[..8].try_into().unwrap());
    let lo = u64::from_ne_bytes(bytes[8..].try_into().unwrap());
    ((hi ^ lo).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - VERDICT_BITS)) as u32
}
