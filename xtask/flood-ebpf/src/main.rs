//! The benchmark's flood generator. Run through BPF_PROG_TEST_RUN in live-frames mode with the
//! sender's veth as ingress device, it rewrites each frame's IPv4 source to one of `SOURCES`
//! addresses (last octet 1..=SOURCES, chosen at random), fixes the header checksum
//! incrementally (RFC 1624) and returns XDP_TX, which the kernel turns into a transmit on that
//! veth: the frames reach the receiver the way a NIC delivers them. `bench_bare_drop` is the
//! yardstick the receiver runs side by side with api-shield.
//!
//! bench-flood runs `bench_flood_sources` instead: any number of sources (or any IPv4 address
//! at random), random source ports, and the TCP checksum kept valid, so the bare kernel sees a
//! flood it has to handle rather than segments it can discard for a bad checksum. It also
//! attaches `bench_bare_pass` to the receiver as its control state (XDP attached, passing all).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::XdpContext,
};

/// Distinct sources in the flood.
const SOURCES: u32 = 252;
/// Offset of the last byte of the IPv4 source address (Ethernet 14 + 15).
const SRC_LAST: usize = 14 + 15;
/// Offset of the IPv4 header checksum.
const CSUM: usize = 14 + 10;

#[xdp]
pub fn api_shield_flood(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 34 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the 34 bytes of Ethernet and IPv4 headers were checked above.
    unsafe {
        let last = (start + SRC_LAST) as *mut u8;
        let old = *last;
        let new = (bpf_get_prandom_u32() % SOURCES + 1) as u8;
        *last = new;
        let csum = (start + CSUM) as *mut [u8; 2];
        // The changed byte is the low byte of the 16-bit word holding source bytes 2..4.
        let mut sum = u32::from(!u16::from_be_bytes(*csum));
        sum += u32::from(!u16::from(old)) + u32::from(new);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        *csum = (!(sum as u16)).to_be_bytes();
    }
    xdp_action::XDP_TX
}

/// What [`bench_flood_sources`] sends. Slot 0: the number of sources, `10.203.0.1` upwards (0:
/// any IPv4 address at random). Slot 1: the frame's transport ([`L4_NONE`], [`L4_TCP`] or
/// [`L4_UDP`]), whose source port is randomised (and, for TCP, whose checksum is kept valid).
/// Slot 2: the share of frames transmitted, out of 2^32 (0: all); the others are dropped, so a
/// fraction of full speed reaches the receiver as evenly spread as the generator's frames.
#[map]
static FLOOD_SPEC: Array<u32> = Array::with_max_entries(3, 0);

/// Leave the transport header alone.
const L4_NONE: u32 = 0;
/// A TCP segment: random source port, checksum updated.
const L4_TCP: u32 = 1;
/// A UDP datagram without a checksum: random source port.
const L4_UDP: u32 = 2;
/// Offset of the IPv4 source address.
const SRC: usize = 14 + 12;
/// Offset of the transport source port (IPv4 header without options).
const SPORT: usize = 14 + 20;
/// Offset of the TCP checksum.
const TCP_CSUM: usize = 14 + 20 + 16;

/// bench-flood's generator: rewrites each frame's source address (and port) as [`FLOOD_SPEC`]
/// says, keeps the checksums valid (RFC 1624 incremental updates) and transmits it.
#[xdp]
pub fn bench_flood_sources(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + TCP_CSUM + 2 > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let count = FLOOD_SPEC.get(0).copied().unwrap_or(0);
    let l4 = FLOOD_SPEC.get(1).copied().unwrap_or(L4_NONE);
    let share = FLOOD_SPEC.get(2).copied().unwrap_or(0);
    // SAFETY: a helper without arguments.
    let (random, random_port, draw) = unsafe {
        (
            bpf_get_prandom_u32(),
            bpf_get_prandom_u32(),
            bpf_get_prandom_u32(),
        )
    };
    if share != 0 && draw >= share {
        return xdp_action::XDP_DROP;
    }
    let new: [u8; 4] = if count == 0 {
        random.to_ne_bytes()
    } else {
        let index = random % count + 1;
        [10, 203, (index >> 8) as u8, index as u8]
    };
    let port = (random_port as u16 | 1024).to_be_bytes();
    // SAFETY: every offset written below ends before `TCP_CSUM + 2`, checked above.
    unsafe {
        let src = (start + SRC) as *mut [u8; 4];
        let old = *src;
        *src = new;
        let ip_delta = [
            (old[0], old[1], new[0], new[1]),
            (old[2], old[3], new[2], new[3]),
        ];
        update_checksum((start + CSUM) as *mut [u8; 2], &ip_delta);
        if l4 != L4_TCP && l4 != L4_UDP {
            return xdp_action::XDP_TX;
        }
        let sport = (start + SPORT) as *mut [u8; 2];
        let old_port = *sport;
        *sport = port;
        if l4 == L4_TCP {
            // The pseudo-header holds the source address; the header, the port.
            let tcp_delta = [
                ip_delta[0],
                ip_delta[1],
                (old_port[0], old_port[1], port[0], port[1]),
            ];
            update_checksum((start + TCP_CSUM) as *mut [u8; 2], &tcp_delta);
        }
    }
    xdp_action::XDP_TX
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for each changed 16-bit word (old hi, old lo, new
/// hi, new lo).
///
/// # Safety
/// `csum` points to two bytes inside the packet.
#[inline(always)]
unsafe fn update_checksum(csum: *mut [u8; 2], changes: &[(u8, u8, u8, u8)]) {
    let mut sum = u32::from(!u16::from_be_bytes(*csum));
    for &(old_hi, old_lo, new_hi, new_lo) in changes {
        sum += u32::from(!u16::from_be_bytes([old_hi, old_lo]));
        sum += u32::from(u16::from_be_bytes([new_hi, new_lo]));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    *csum = (!(sum as u16)).to_be_bytes();
}

/// bench-flood's control state on the receiver: attached like api-shield, passing everything,
/// so the cost of the veth's XDP receive path is told apart from the program's.
#[xdp]
pub fn bench_bare_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: no reachable panic; the verifier rejects any path that could reach here.
    unsafe { core::hint::unreachable_unchecked() }
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Packets dropped by [`bench_bare_drop`] (per CPU, one slot).
#[map]
static BARE_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sources seen by [`bench_bare_drop`].
#[map]
static BARE_SOURCES: LruHashMap<u32, u64> = LruHashMap::with_max_entries(1024, 0);

/// The yardstick, as in the method's baseline: a minimal drop-by-source program on an LRU hash
/// (check the EtherType, read the IPv4 source, find or insert it, count, drop). The benchmark
/// runs it on the receiver side by side with api-shield.
#[xdp]
pub fn bench_bare_drop(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + 34 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the 34 bytes of Ethernet and IPv4 headers were checked above.
    let (ethertype, src) = unsafe {
        (
            core::ptr::read_unaligned((start + 12) as *const u16),
            core::ptr::read_unaligned((start + 26) as *const u32),
        )
    };
    if ethertype != 0x0800u16.to_be() {
        return xdp_action::XDP_PASS;
    }
    if BARE_SOURCES.get_ptr_mut(src).is_none() {
        let _ = BARE_SOURCES.insert(src, 0, 0);
    }
    if let Some(count) = BARE_DROPS.get_ptr_mut(0) {
        // SAFETY: per-CPU slot from a successful lookup; only this CPU writes it.
        unsafe { *count += 1 };
    }
    xdp_action::XDP_DROP
}
