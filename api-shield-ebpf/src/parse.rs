//! Header parsing: Ethernet, up to two VLAN tags (802.1Q, 802.1ad), IPv4 with any IHL, IPv6
//! with a bounded walk over extension headers. Every read is bounds-checked against
//! `data_end`; offsets are kept small and bounded so the verifier can follow them.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
pub const IPV6_HLEN: usize = 40;
/// The IPv4 header without options.
pub const IPV4_HLEN: usize = 20;
const IPPROTO_TCP: u8 = 6;
/// Extension headers walked before giving up on finding the transport header.
const MAX_EXT_HEADERS: usize = 6;
/// Past this offset the program stops looking for a transport header.
const MAX_L4_OFFSET: usize = 512;

/// What is known of the transport header.
#[derive(Clone, Copy)]
pub enum L4 {
    /// TCP or UDP destination port.
    Port(u16),
    /// No port to be had: an IPv4 non-first fragment, a cut header, or a protocol without
    /// ports.
    Unknown,
    /// IPv6 whose transport header was not reached (an extension chain too long or too deep,
    /// or a non-first fragment): the protocol is unknown too.
    Hidden,
}

/// The fields of an IP packet the decisions need.
pub struct Packet {
    /// Source address, IPv4 as IPv4-mapped IPv6: the 16 bytes held as two words (each word
    /// holds its 8 bytes in memory order), so the program moves and compares it in two steps.
    pub src: [u64; 2],
    /// Whether the packet is IPv6 (the limiter groups IPv6 sources by prefix).
    pub is_v6: bool,
    /// Transport protocol (for IPv6 the last next-header found).
    pub proto: u8,
    /// Destination port, if any.
    pub l4: L4,
    /// Where the IP header starts.
    pub l3_offset: usize,
    /// Where the transport header starts (meaningful with `L4::Port`).
    pub l4_offset: usize,
    /// The TCP flags of a TCP header read whole (20 bytes), else 0.
    pub tcp_flags: u8,
}

/// TCP's SYN and ACK flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;
/// The fixed TCP header.
pub const TCP_HLEN: usize = 20;

impl Packet {
    /// Whether this is a TCP segment of a connection (anything but a bare SYN, read whole):
    /// it starts no work, and belongs to a flow the kernel knows or to none.
    #[inline(always)]
    pub fn tcp_in_flow(&self) -> bool {
        self.proto == IPPROTO_TCP
            && matches!(self.l4, L4::Port(_))
            && self.tcp_flags != 0
            && self.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN
    }
}

/// Outcome of parsing one frame.
pub enum Parsed {
    /// Not IPv4 or IPv6.
    NotIp,
    /// Truncated or malformed up to and including the IP header.
    Malformed,
    /// An IP packet.
    Ip(Packet),
}

/// The 16 address bytes held by two words.
#[inline(always)]
pub fn addr_bytes(words: &[u64; 2]) -> [u8; 16] {
    let [a, b, c, d, e, f, g, h] = words[0].to_ne_bytes();
    let [i, j, k, l, m, n, o, p] = words[1].to_ne_bytes();
    [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p]
}

#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// `N` bytes at `offset`, with one bounds check for all of them (separate checks for
/// neighbouring bytes get merged by LLVM into a form the verifier cannot follow).
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    // SAFETY: `ptr_at` checked that all `N` bytes lie inside the packet.
    ptr_at::<[u8; N]>(ctx, offset).map(|p| unsafe { *p })
}

#[inline(always)]
fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    // SAFETY: `ptr_at` checked that both bytes lie inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_be_bytes(unsafe { *p }))
}

/// The `LEN` bytes at `AT` in `bytes`, read as one load where the target allows it.
///
/// Each field is read with a single load: byte-by-byte reads of the frame's second cache line
/// cost the receiver dearly on the wire (BENCHMARKS.md, bench-xdp, 2026-11-30). The build
/// enables LLVM's `allows-misaligned-mem-access` for this crate (`api-shield/build.rs`),
/// without which LLVM splits any load it cannot prove aligned into bytes.
#[inline(always)]
fn read_at<const AT: usize, const LEN: usize, const N: usize>(bytes: &[u8; N]) -> [u8; LEN] {
    const { assert!(AT + LEN <= N) };
    // SAFETY: `AT + LEN <= N` (checked at compile time), so the read stays inside `bytes`;
    // `[u8; LEN]` has alignment 1.
    unsafe { core::ptr::read(bytes.as_ptr().add(AT).cast::<[u8; LEN]>()) }
}

/// Parses a frame down to the transport header.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let Some(mut ethertype) = be16(ctx, 12) else {
        return Parsed::Malformed;
    };
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(inner) = be16(ctx, l3 + 2) else {
            return Parsed::Malformed;
        };
        ethertype = inner;
        l3 += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let Some(inner) = be16(ctx, l3 + 2) else {
                return Parsed::Malformed;
            };
            ethertype = inner;
            l3 += 4;
        }
    }
    match ethertype {
        ETH_P_IP => parse_v4(ctx, l3),
        ETH_P_IPV6 => parse_v6(ctx, l3),
        _ => Parsed::NotIp,
    }
}

#[inline(always)]
fn parse_v4(ctx: &XdpContext, l3: usize) -> Parsed {
    let Some(hdr) = ptr_at::<[u8; 20]>(ctx, l3) else {
        return Parsed::Malformed;
    };
    // SAFETY: `ptr_at` checked the 20 bytes of the fixed header.
    let hdr = unsafe { &*hdr };
    let version = hdr[0] >> 4;
    let ihl = usize::from(hdr[0] & 0x0f);
    if version != 4 || ihl < 5 {
        return Parsed::Malformed;
    }
    let header_len = ihl * 4;
    // The options must be there too, or the kernel would reject the packet anyway.
    if ptr_at::<u8>(ctx, l3 + header_len - 1).is_none() {
        return Parsed::Malformed;
    }
    let [a, b, c, d] = read_at::<12, 4, 20>(hdr);
    let src = [0, u64::from_ne_bytes([0, 0, 0xff, 0xff, a, b, c, d])];
    let proto = hdr[9];
    let fragment_offset = u16::from_be_bytes(read_at::<6, 2, 20>(hdr)) & 0x1fff;
    let l4_offset = l3 + header_len;
    let (l4, tcp_flags) = if fragment_offset != 0 {
        (L4::Unknown, 0)
    } else {
        ports(ctx, proto, l4_offset)
    };
    Parsed::Ip(Packet {
        src,
        is_v6: false,
        proto,
        l4,
        l3_offset: l3,
        l4_offset,
        tcp_flags,
    })
}

#[inline(always)]
fn parse_v6(ctx: &XdpContext, l3: usize) -> Parsed {
    let Some(hdr) = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3) else {
        return Parsed::Malformed;
    };
    // SAFETY: `ptr_at` checked the 40 bytes of the fixed header.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let src = [
        u64::from_ne_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]),
        u64::from_ne_bytes([
            hdr[16], hdr[17], hdr[18], hdr[19], hdr[20], hdr[21], hdr[22], hdr[23],
        ]),
    ];
    // An IPv4-mapped source (::ffff:0:0/96) is not a valid IPv6 source on the wire (RFC 4291
    // 2.5.5.2; Linux drops such packets on input). In the maps IPv4 is stored mapped, so one
    // would pose as the IPv4 address: it would match IPv4 rules and share its verdict-cache
    // entry. Passed as malformed, it reaches no rule and no limiter state.
    if hdr[8..18].iter().all(|b| *b == 0) && hdr[18] == 0xff && hdr[19] == 0xff {
        return Parsed::Malformed;
    }
    let mut next = hdr[6];
    let mut offset = l3 + IPV6_HLEN;
    let mut found = false;
    for _ in 0..MAX_EXT_HEADERS {
        if offset > MAX_L4_OFFSET {
            break;
        }
        match next {
            // Hop-by-hop, routing, destination options: length in 8-octet units, not counting
            // the first 8.
            0 | 43 | 60 => {
                let Some([nh, len]) = bytes::<2>(ctx, offset) else {
                    break;
                };
                next = nh;
                offset += (usize::from(len) + 1) * 8;
            }
            // Fragment header: only the first fragment carries the transport header.
            44 => {
                let Some([nh, _, frag_hi, frag_lo]) = bytes::<4>(ctx, offset) else {
                    break;
                };
                if u16::from_be_bytes([frag_hi, frag_lo]) >> 3 != 0 {
                    next = nh;
                    break;
                }
                next = nh;
                offset += 8;
            }
            // Authentication header: length in 4-octet units, not counting the first 2.
            51 => {
                let Some([nh, len]) = bytes::<2>(ctx, offset) else {
                    break;
                };
                next = nh;
                offset += (usize::from(len) + 2) * 4;
            }
            _ => {
                found = true;
                break;
            }
        }
    }
    let (l4, tcp_flags) = if !found || offset > MAX_L4_OFFSET {
        (L4::Hidden, 0)
    } else {
        ports(ctx, next, offset)
    };
    Parsed::Ip(Packet {
        src,
        is_v6: true,
        proto: next,
        l4,
        l3_offset: l3,
        l4_offset: offset,
        tcp_flags,
    })
}

/// Destination port of a TCP or UDP header at `offset`, with the TCP flags when the fixed TCP
/// header is there whole (0 otherwise); `Unknown` when the port is cut off or the protocol has
/// no ports (the caller only asks for TCP and UDP).
#[inline(always)]
fn ports(ctx: &XdpContext, proto: u8, offset: usize) -> (L4, u8) {
    if proto != IPPROTO_TCP && proto != 17 {
        return (L4::Unknown, 0);
    }
    let Some(port) = be16(ctx, offset + 2) else {
        return (L4::Unknown, 0);
    };
    if proto != IPPROTO_TCP {
        return (L4::Port(port), 0);
    }
    match ptr_at::<[u8; TCP_HLEN]>(ctx, offset) {
        // SAFETY: `ptr_at` checked the 20 bytes of the fixed header.
        Some(header) => (L4::Port(port), unsafe { (*header)[13] }),
        None => (L4::Port(port), 0),
    }
}
