//! SYN cookies from the NIC: a SYN from a source that has not completed a handshake, passed by
//! the limiter or over the shared untracked budget (a flood from spoofed sources is spending
//! it), is answered here with the SYN-ACK the kernel would send, instead of being passed to the
//! stack (which would answer it the same way at a higher cost) or dropped with the flood, so a
//! never-seen client still connects at once.
//!
//! The cookie is the kernel's own: `bpf_tcp_gen_syncookie` computes it with the listener's
//! socket and the kernel's secret, and only when the kernel itself would answer with a cookie
//! (the listener's SYN queue is full, or `net.ipv4.tcp_syncookies = 2`); it marks the listener
//! as sending cookies, so the kernel accepts the client's ACK as the end of a handshake it made
//! (`flow.rs` passes that ACK and tracks its source). When the kernel would not send a cookie
//! (its queue has room, cookies are off, no listener has the port) nothing is answered and the
//! limiter's verdict stands.
//!
//! Limits: the reply carries the MSS option only. Window scaling, SACK and timestamps need the
//! timestamp option to carry them through the cookie, and the kernel reads it back with a
//! per-connection offset that BPF cannot compute; so a connection made this way runs without
//! them, as the kernel's own cookie connections do with clients that send no timestamps. SYNs
//! with IPv4 options or IPv6 extension headers are not answered (dropped as before).

use aya_ebpf::{
    bindings::{tcphdr, BPF_TCP_LISTEN},
    helpers::generated::{
        bpf_sk_release, bpf_tcp_gen_syncookie, bpf_xdp_adjust_tail, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};

use crate::{
    flow,
    maps::{CookieScratch, COOKIE_SCRATCH},
    parse::{Packet, IPV4_HLEN, IPV6_HLEN, L4, TCP_ACK, TCP_SYN},
};

const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;
const IPPROTO_TCP: u8 = 6;
/// The reply's TCP header: 20 bytes and the 4-byte MSS option.
const REPLY_TCP_LEN: usize = 24;
/// The largest TCP header (data offset 15).
const MAX_TCP_LEN: usize = 60;
/// Where the IP header may start: after Ethernet and at most two VLAN tags.
const MAX_L3_OFFSET: usize = 22;
/// The initial window the kernel itself offers without window scaling (ten segments).
const INITIAL_SEGMENTS: u32 = 10;
const TTL: u8 = 64;

/// Whether `pkt` is a bare SYN: SYN set, ACK, RST and FIN clear.
#[inline(always)]
pub fn is_bare_syn(pkt: &Packet) -> bool {
    pkt.proto == IPPROTO_TCP
        && matches!(pkt.l4, L4::Port(_))
        && pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN
}

/// Turns the bare SYN `pkt` into the kernel's SYN-ACK with a cookie, in place, for `XDP_TX`.
/// Returns false, with the frame untouched, when the kernel would not answer it with a cookie
/// or the frame is of a shape this does not answer; true once the frame is the reply.
#[inline(always)]
pub fn answer(ctx: &XdpContext, pkt: &Packet) -> bool {
    let l3 = pkt.l3_offset;
    let ip_len = if pkt.is_v6 { IPV6_HLEN } else { IPV4_HLEN };
    // No IPv4 options, no IPv6 extension headers: the reply's headers sit where the SYN's are.
    if l3 > MAX_L3_OFFSET || pkt.l4_offset != l3 + ip_len {
        return false;
    }
    let l4 = l3 + ip_len;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + l4 + 20 > end {
        return false;
    }
    // SAFETY: the fixed TCP header was bounds-checked above.
    let th_len = usize::from(unsafe { *((start + l4 + 12) as *const u8) } >> 4) * 4;
    // Read back through memory so the compiler cannot carry its own knowledge of the value past
    // the check: the verifier needs the bounds on the very register passed to the helpers.
    // SAFETY: a read of a local.
    let th_len = unsafe { core::ptr::read_volatile(&th_len) };
    if !(20..=MAX_TCP_LEN).contains(&th_len) {
        return false;
    }
    let Some(scratch) = COOKIE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot from a successful lookup; only this run on this CPU uses it.
    let scratch = unsafe { &mut *scratch };
    // The helper parses the options (the MSS) from a header whose length is only known at run
    // time; a copy gives it a buffer of a size the verifier can bound.
    // SAFETY: `syn` holds `MAX_TCP_LEN` bytes and `th_len` is at most that.
    let copied = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            l4 as u32,
            scratch.syn.as_mut_ptr().cast(),
            th_len as u32,
        )
    };
    if copied != 0 {
        return false;
    }
    let Some(found) = flow::socket(ctx, pkt) else {
        return false;
    };
    // SAFETY: `found.sock` is a live reference, released right after; the IP header pointer was
    // bounds-checked by `flow::socket` for `ip_len` bytes.
    let cookie = unsafe {
        let value = if (*found.sock).state == BPF_TCP_LISTEN {
            bpf_tcp_gen_syncookie(
                found.sock.cast(),
                found.ip as *mut _,
                found.ip_len,
                scratch.syn.as_mut_ptr().cast::<tcphdr>(),
                th_len as u32,
            )
        } else {
            -1
        };
        bpf_sk_release(found.sock.cast());
        value
    };
    if cookie < 0 {
        return false;
    }
    write_reply(
        ctx,
        pkt.is_v6,
        l3,
        cookie as u32,
        (cookie >> 32) as u16,
        scratch,
    )
}

/// Rewrites the frame into the SYN-ACK: addresses and ports swapped, `seq` as its sequence
/// number, the client's sequence number plus one acknowledged, the MSS option; the frame cut or
/// grown to the reply's length. `scratch.syn` holds the SYN's TCP header.
#[inline(always)]
fn write_reply(
    ctx: &XdpContext,
    is_v6: bool,
    l3: usize,
    seq: u32,
    mss: u16,
    scratch: &mut CookieScratch,
) -> bool {
    let ip_len = if is_v6 { IPV6_HLEN } else { IPV4_HLEN };
    let l4 = l3 + ip_len;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + l4 > end {
        return false;
    }
    // What the reply needs from the SYN, read before the frame is resized: the MAC addresses
    // and the SYN's source and destination (IPv4 in the first four bytes).
    // SAFETY: Ethernet and the IP header lie before `l4`, which was bounds-checked above.
    let macs = unsafe {
        if is_v6 {
            scratch.theirs = core::ptr::read_unaligned((start + l3 + 8) as *const [u8; 16]);
            scratch.ours = core::ptr::read_unaligned((start + l3 + 24) as *const [u8; 16]);
        } else {
            let [a, b, c, d, e, f, g, h] =
                core::ptr::read_unaligned((start + l3 + 12) as *const [u8; 8]);
            scratch.theirs[..4].copy_from_slice(&[a, b, c, d]);
            scratch.ours[..4].copy_from_slice(&[e, f, g, h]);
        }
        core::ptr::read_unaligned(start as *const [u8; 12])
    };
    let old_len = (end - start) as i32;
    let new_len = (l4 + REPLY_TCP_LEN) as i32;
    if new_len != old_len {
        // SAFETY: the context pointer is valid; the helper checks the new length itself.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, new_len - old_len) } != 0 {
            return false;
        }
    }
    let syn = &scratch.syn;
    let client_seq = u32::from_be_bytes([syn[4], syn[5], syn[6], syn[7]]);
    let window = (u32::from(mss) * INITIAL_SEGMENTS).min(0xffff) as u16;
    let tcp = &mut scratch.tcp;
    tcp[0..2].copy_from_slice(&syn[2..4]);
    tcp[2..4].copy_from_slice(&syn[0..2]);
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&client_seq.wrapping_add(1).to_be_bytes());
    tcp[12] = ((REPLY_TCP_LEN / 4) as u8) << 4;
    tcp[13] = TCP_SYN | TCP_ACK;
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0; 4]);
    tcp[20] = 2;
    tcp[21] = 4;
    tcp[22..24].copy_from_slice(&mss.to_be_bytes());
    // Pseudo-header (the reply goes from the SYN's destination to its source; protocol and TCP
    // length), then the header.
    let (ours, theirs) = (&scratch.ours, &scratch.theirs);
    let mut sum = if is_v6 {
        sum16(ours, sum16(theirs, 0))
    } else {
        sum16(&[ours[0], ours[1], ours[2], ours[3]], 0)
            + sum16(&[theirs[0], theirs[1], theirs[2], theirs[3]], 0)
    };
    sum += u32::from(IPPROTO_TCP) + REPLY_TCP_LEN as u32;
    sum = sum16(tcp, sum);
    tcp[16..18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    let ip = &mut scratch.ip;
    if is_v6 {
        ip[0..8].copy_from_slice(&[0x60, 0, 0, 0, 0, REPLY_TCP_LEN as u8, IPPROTO_TCP, TTL]);
        ip[8..24].copy_from_slice(ours);
        ip[24..40].copy_from_slice(theirs);
    } else {
        // Version and length, no TOS, total length, no ID, don't fragment, TTL, protocol.
        ip[0..12].copy_from_slice(&[
            0x45,
            0,
            0,
            (IPV4_HLEN + REPLY_TCP_LEN) as u8,
            0,
            0,
            0x40,
            0,
            TTL,
            IPPROTO_TCP,
            0,
            0,
        ]);
        ip[12..16].copy_from_slice(&ours[..4]);
        ip[16..20].copy_from_slice(&theirs[..4]);
        let v4: &[u8; IPV4_HLEN] = ip[..IPV4_HLEN].try_into().unwrap_or(&[0; IPV4_HLEN]);
        let check = !fold(sum16(v4, 0));
        ip[10..12].copy_from_slice(&check.to_be_bytes());
    }
    let start = ctx.data();
    let end = ctx.data_end();
    if start + l4 + REPLY_TCP_LEN > end {
        return false;
    }
    // SAFETY: `start + l4 + REPLY_TCP_LEN <= end` was checked after the resize, which covers
    // Ethernet, the IP header and the reply's TCP header.
    unsafe {
        let mut swapped = [0u8; 12];
        swapped[0..6].copy_from_slice(&macs[6..12]);
        swapped[6..12].copy_from_slice(&macs[0..6]);
        core::ptr::write_unaligned(start as *mut [u8; 12], swapped);
        if is_v6 {
            core::ptr::write_unaligned((start + l3) as *mut [u8; IPV6_HLEN], *ip);
        } else {
            let v4: [u8; IPV4_HLEN] = ip[..IPV4_HLEN].try_into().unwrap_or([0; IPV4_HLEN]);
            core::ptr::write_unaligned((start + l3) as *mut [u8; IPV4_HLEN], v4);
        }
        core::ptr::write_unaligned((start + l4) as *mut [u8; REPLY_TCP_LEN], *tcp);
    }
    true
}

/// Adds `bytes` (`N` even) as 16-bit big-endian words to `sum`: the one's-complement sum of
/// RFC 1071 before folding. Headers here are at most 40 bytes, far from overflowing.
#[inline(always)]
fn sum16<const N: usize>(bytes: &[u8; N], mut sum: u32) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}

/// Folds a 32-bit sum of 16-bit words into 16 bits (two rounds suffice below 2^31).
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
