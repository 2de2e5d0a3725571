//! The benchmark's flood generator. Run through BPF_PROG_TEST_RUN in live-frames mode with the
//! sender's veth as ingress device, it rewrites each frame's IPv4 source to one of `SOURCES`
//! addresses (last octet 1..=SOURCES, chosen at random), fixes the header checksum
//! incrementally (RFC 1624) and returns XDP_TX, which the kernel turns into a transmit on that
//! veth: the frames reach the receiver the way a NIC delivers them. `bench_bare_drop` is the
//! yardstick the receiver runs side by side with api-shield.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{map, xdp},
    maps::{LruHashMap, PerCpuArray},
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
