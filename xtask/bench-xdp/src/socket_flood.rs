//! The flood from user space, for kernels that refuse `BPF_PROG_TEST_RUN` in live-frames mode
//! (some sandboxed VMs answer it with EPERM even as root): an `AF_PACKET` socket bound to the
//! sender veth, past the qdisc (`PACKET_QDISC_BYPASS`), sending batches of frames with one
//! `sendmmsg` each. Every frame is rewritten as the XDP generator (`xtask/flood-ebpf`) rewrites
//! it: a source address from the flood's spec and a random source port, checksums kept valid
//! by RFC 1624 updates. A share of full speed is paced to its rate instead of thinned by a
//! random draw.
//!
//! The frames reach the receiver as socket buffers, not XDP frames, and one CPU of user space
//! makes them: full speed is lower than the in-kernel generator's. bench-flood names the
//! generator in its report.
//!
//! No crate sends raw frames in batches on a packet socket (nix has neither `sockaddr_ll`
//! construction nor `PACKET_QDISC_BYPASS`), so the few calls are made through libc here.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use nix::libc;

/// Frames per `sendmmsg`.
const BATCH: usize = 64;
/// Offset of the IPv4 source address (Ethernet 14 + 12).
const SRC: usize = 14 + 12;
/// Offset of the IPv4 header checksum.
const CSUM: usize = 14 + 10;
/// Offset of the transport source port (IPv4 header without options).
const SPORT: usize = 14 + 20;
/// Offset of the TCP checksum.
const TCP_CSUM: usize = 14 + 20 + 16;
/// `FLOOD_SPEC` slot 1: a TCP segment (checksum kept valid), a UDP datagram (no checksum).
const L4_TCP: u32 = 1;
const L4_UDP: u32 = 2;

/// How each frame of the flood is rewritten: `FLOOD_SPEC`'s first two slots (sources counted up
/// from the frame's own source, 0 for any IPv4 address; the transport).
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub sources: u32,
    pub l4: u32,
}

/// Sends `frame`, rewritten per `rewrite`, on the interface `ifindex` of the calling thread's
/// network namespace, at `pps` frames per second (`None`: as fast as it goes), until `stop` or
/// `deadline`. Returns the frames sent, counting those the link refused (its receive ring full),
/// which a NIC would drop as well; `sent` follows the count.
pub fn run(
    frame: &[u8],
    rewrite: Rewrite,
    ifindex: u32,
    pps: Option<f64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
    deadline: Instant,
) -> Result<u64> {
    if frame.len() < TCP_CSUM + 2 {
        bail!("a flood frame needs Ethernet, IPv4 and TCP headers");
    }
    let socket = packet_socket(ifindex)?;
    let mut frames = vec![frame.to_vec(); BATCH];
    let mut random = Xorshift::seeded();
    let started = Instant::now();
    let mut generated = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for frame in &mut frames {
            rewrite_frame(frame, rewrite, &mut random);
        }
        let mut offset = 0;
        while offset < BATCH {
            offset += send_batch(&socket, &mut frames[offset..])?;
        }
        generated += BATCH as u64;
        sent.store(generated, Ordering::Relaxed);
        if let Some(pps) = pps {
            // Ahead of the schedule: wait for it (a sleeping generator leaves its CPU to the
            // rest, as an attacker's own machine would).
            let due = Duration::from_secs_f64(generated as f64 / pps);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    Ok(generated)
}

/// A raw packet socket that only sends (protocol 0), bound to `ifindex`, past the qdisc.
fn packet_socket(ifindex: u32) -> Result<OwnedFd> {
    // SAFETY: plain system calls on a descriptor this function owns; the address and option
    // structures live on the stack for the length of each call, and the lengths given are
    // theirs.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let socket = OwnedFd::from_raw_fd(fd);
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = i32::try_from(ifindex)?;
        if libc::bind(
            fd,
            std::ptr::from_ref(&address).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error().into());
        }
        let on: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(socket)
    }
}

/// Sends what it can of `frames` with one `sendmmsg`; returns how many it is done with. A frame
/// the link refused (`ENOBUFS`: the receiver's ring is full) counts as done: it was lost on the
/// way, as on a wire.
fn send_batch(socket: &OwnedFd, frames: &mut [Vec<u8>]) -> Result<usize> {
    let mut iovecs: Vec<libc::iovec> = frames
        .iter_mut()
        .map(|frame| libc::iovec {
            iov_base: frame.as_mut_ptr().cast(),
            iov_len: frame.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iovec| {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = std::ptr::from_mut(iovec);
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: `headers` and the iovecs and frames they point to outlive the call; the count is
    // the length of `headers`.
    let done = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            u32::try_from(headers.len())?,
            0,
        )
    };
    match usize::try_from(done) {
        // The frame after the last one sent was refused, or none was: skip it.
        Ok(sent) if sent < frames.len() => Ok(sent + 1),
        Ok(sent) => Ok(sent),
        Err(_) => {
            let error = std::io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN) => Ok(1),
                Some(libc::EINTR) => Ok(0),
                _ => Err(error.into()),
            }
        }
    }
}

/// Rewrites one frame's source address and port as the XDP generator does.
fn rewrite_frame(frame: &mut [u8], rewrite: Rewrite, random: &mut Xorshift) {
    let old: [u8; 4] = frame[SRC..SRC + 4].try_into().expect("four bytes");
    let draw = random.next();
    let new: [u8; 4] = if rewrite.sources == 0 {
        (draw as u32).to_be_bytes()
    } else {
        let index = (draw as u32) % rewrite.sources + 1;
        [old[0], old[1], (index >> 8) as u8, index as u8]
    };
    frame[SRC..SRC + 4].copy_from_slice(&new);
    let ip_delta = [
        ([old[0], old[1]], [new[0], new[1]]),
        ([old[2], old[3]], [new[2], new[3]]),
    ];
    update_checksum(&mut frame[CSUM..CSUM + 2], &ip_delta);
    if rewrite.l4 != L4_TCP && rewrite.l4 != L4_UDP {
        return;
    }
    let port = (((draw >> 32) as u16) | 1024).to_be_bytes();
    let old_port = [frame[SPORT], frame[SPORT + 1]];
    frame[SPORT..SPORT + 2].copy_from_slice(&port);
    if rewrite.l4 == L4_TCP {
        // The pseudo-header holds the source address; the header, the port.
        let tcp_delta = [ip_delta[0], ip_delta[1], (old_port, port)];
        update_checksum(&mut frame[TCP_CSUM..TCP_CSUM + 2], &tcp_delta);
    }
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') for each changed 16-bit word (old, new).
fn update_checksum(checksum: &mut [u8], changes: &[([u8; 2], [u8; 2])]) {
    let mut sum = u32::from(!u16::from_be_bytes([checksum[0], checksum[1]]));
    for (old, new) in changes {
        sum += u32::from(!u16::from_be_bytes(*old));
        sum += u32::from(u16::from_be_bytes(*new));
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    checksum.copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

/// xorshift64*: the generator only needs addresses and ports spread evenly, fast.
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    /// The Internet checksum (RFC 1071) over `bytes`: 0 when a header carries its right sum.
    fn fold(bytes: &[u8]) -> u16 {
        let mut sum: u32 = bytes
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn tcp_checksum_holds(frame: &[u8]) -> bool {
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&frame[SRC..SRC + 8]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&frame[SPORT..SPORT + 20]);
        fold(&pseudo) == 0
    }

    #[test]
    fn rewritten_frames_keep_valid_checksums_and_spread_sources() {
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 203, 0, 1), 40000);
        let to = SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 2), 443);
        let original = crate::generator::tcp_frame([2; 6], [4; 6], from, to, 0x02);
        assert!(tcp_checksum_holds(&original));
        let mut random = Xorshift::seeded();
        let mut sources = std::collections::HashSet::new();
        for sources_in_spec in [0, 10_000] {
            let rewrite = Rewrite {
                sources: sources_in_spec,
                l4: L4_TCP,
            };
            for _ in 0..2000 {
                let mut frame = original.clone();
                rewrite_frame(&mut frame, rewrite, &mut random);
                assert_eq!(fold(&frame[14..34]), 0, "IPv4 header checksum");
                assert!(tcp_checksum_holds(&frame), "TCP checksum");
                if sources_in_spec != 0 {
                    assert_eq!(&frame[SRC..SRC + 2], &[10, 203]);
                    let index = u32::from(u16::from_be_bytes([frame[SRC + 2], frame[SRC + 3]]));
                    assert!((1..=sources_in_spec).contains(&index), "{index}");
                }
                assert!(u16::from_be_bytes([frame[SPORT], frame[SPORT + 1]]) >= 1024);
                sources.insert(frame[SRC..SRC + 4].to_vec());
            }
        }
        assert!(sources.len() > 3000, "{} distinct sources", sources.len());
    }
}
