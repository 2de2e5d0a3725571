//! Whether a TCP segment belongs to a connection the kernel knows: the per-source budget is for
//! what starts work (SYNs, packets of other protocols), so the segments of an accepted
//! connection are never charged to it, whatever their rate; and a segment of no connection (an
//! ACK flood from spoofed sources, say) is dropped here rather than answered by the kernel.
//!
//! The kernel's own socket table decides, through `bpf_skc_lookup_tcp` in the interface's
//! network namespace: an established, closing or time-wait socket for the segment's four-tuple
//! makes it part of a flow. A half-open one (`SYN_RECV`) makes it the last step of a handshake;
//! so does a listener, when the segment carries a SYN cookie the kernel issued (when its SYN
//! queue overflowed; `syncookie.rs` issues the same cookies from the NIC), which
//! `bpf_tcp_check_syncookie` checks against the kernel's secret. A source that completes a
//! handshake has shown it is no spoofed address.

use aya_ebpf::{
    bindings::{
        bpf_sock, bpf_sock_tuple, BPF_F_CURRENT_NETNS, BPF_TCP_LISTEN, BPF_TCP_NEW_SYN_RECV,
    },
    helpers::generated::{bpf_sk_release, bpf_skc_lookup_tcp, bpf_tcp_check_syncookie},
    programs::XdpContext,
};

use crate::parse::{Packet, IPV4_HLEN, IPV6_HLEN, TCP_HLEN};

/// What a TCP segment is to the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// A segment of a connection the kernel has.
    Known,
    /// The last step of a handshake (to a half-open connection, or with a valid SYN cookie).
    Completing,
    /// A segment of no connection.
    None,
}

/// What the TCP segment `pkt` is to the kernel of this network namespace. A segment whose
/// headers cannot be read again belongs to no connection.
#[inline(always)]
pub fn lookup(ctx: &XdpContext, pkt: &Packet) -> Flow {
    let Some(found) = socket(ctx, pkt) else {
        return Flow::None;
    };
    // SAFETY: `socket` returned a live socket reference, released on every path below as the
    // verifier demands; the header pointers were bounds-checked by it.
    unsafe {
        let sock = found.sock;
        let state = (*sock).state;
        let flow = if state == BPF_TCP_LISTEN {
            let cookie = bpf_tcp_check_syncookie(
                sock.cast(),
                found.ip as *mut _,
                found.ip_len,
                found.tcp as *mut _,
                TCP_HLEN as u32,
            );
            if cookie == 0 {
                Flow::Completing
            } else {
                Flow::None
            }
        } else if state == BPF_TCP_NEW_SYN_RECV {
            Flow::Completing
        } else {
            Flow::Known
        };
        bpf_sk_release(sock.cast());
        flow
    }
}

/// A socket the kernel holds for a segment's four-tuple, with the segment's headers. The
/// caller must release `sock` (`bpf_sk_release`) on every path.
pub struct Found {
    pub sock: *mut bpf_sock,
    /// The IP header (its fixed part bounds-checked: `ip_len` bytes).
    pub ip: usize,
    pub ip_len: u32,
    /// The fixed TCP header (bounds-checked: `TCP_HLEN` bytes).
    pub tcp: usize,
}

/// The socket (connection, half-open request or listener) the kernel of this network namespace
/// would hand the TCP segment `pkt` to, if any.
#[inline(always)]
pub fn socket(ctx: &XdpContext, pkt: &Packet) -> Option<Found> {
    let start = ctx.data();
    let end = ctx.data_end();
    let (ip_len, tuple_size) = if pkt.is_v6 {
        (IPV6_HLEN, 36u32)
    } else {
        (IPV4_HLEN, 12u32)
    };
    let ip = start + pkt.l3_offset;
    let tcp = start + pkt.l4_offset;
    if ip + ip_len > end || tcp + TCP_HLEN > end {
        return None;
    }
    // SAFETY: an all-zero tuple is a valid value of this plain-data union.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    // SAFETY: both headers were bounds-checked above; the reads copy addresses and ports as
    // they are on the wire (network order), which is what the helper takes.
    unsafe {
        let ports = core::ptr::read_unaligned(tcp as *const [u16; 2]);
        if pkt.is_v6 {
            let addrs = core::ptr::read_unaligned((ip + 8) as *const [u32; 8]);
            let v6 = &mut tuple.__bindgen_anon_1.ipv6;
            v6.saddr = [addrs[0], addrs[1], addrs[2], addrs[3]];
            v6.daddr = [addrs[4], addrs[5], addrs[6], addrs[7]];
            v6.sport = ports[0];
            v6.dport = ports[1];
        } else {
            let addrs = core::ptr::read_unaligned((ip + 12) as *const [u32; 2]);
            let v4 = &mut tuple.__bindgen_anon_1.ipv4;
            v4.saddr = addrs[0];
            v4.daddr = addrs[1];
            v4.sport = ports[0];
            v4.dport = ports[1];
        }
    }
    // SAFETY: the context and tuple pointers are valid for the call.
    let sock = unsafe {
        bpf_skc_lookup_tcp(
            ctx.ctx.cast(),
            &mut tuple,
            tuple_size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sock.is_null() {
        return None;
    }
    Some(Found {
        sock,
        ip,
        ip_len: ip_len as u32,
        tcp,
    })
}
