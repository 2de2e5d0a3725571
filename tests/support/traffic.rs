//! Real UDP traffic between the namespaces: paced senders bound to chosen source addresses, and
//! receivers that count datagrams per source until an end marker arrives.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::mpsc::channel,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::netns::{Netns, RX_V4, RX_V6};

/// Source of the end markers; every test config allows it, so markers are never limited.
pub const MARKER_SRC: Ipv4Addr = Ipv4Addr::new(10, 201, 250, 1);
/// The CIDR to allow for markers.
pub const MARKER_CIDR: &str = "10.201.250.0/24";
const MARKER: &[u8] = b"api-shield-test-end";
/// Longest a receiver waits for the next datagram before giving up on its marker.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Binds the receiver's port. The previous receiver on it has closed its socket, but a child
/// another test thread is spawning at that moment holds a copy of every descriptor until it
/// executes its program: the port is free once it has, so the bind is retried until then
/// (bounded by a second).
fn bind_again(port: u16) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match UdpSocket::bind(("::", port)) {
            Ok(socket) => return socket,
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("binding the receiver: {error:?}"),
        }
    }
}

/// Datagrams received on one port, per source, until the marker.
pub struct Counting {
    handle: JoinHandle<HashMap<IpAddr, u64>>,
}

impl Counting {
    /// Starts counting on `port` (IPv4 and IPv6) in `ns`; returns once the socket is bound.
    pub fn start(ns: &Netns, port: u16) -> Counting {
        let (bound_tx, bound_rx) = channel();
        let handle = ns.run(move || {
            let socket = bind_again(port);
            socket.set_read_timeout(Some(RECEIVE_TIMEOUT)).unwrap();
            // Room for a whole test's worth of datagrams, so none is lost to a slow reader.
            nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::RcvBufForce,
                &(16 << 20),
            )
            .expect("SO_RCVBUFFORCE");
            bound_tx.send(()).unwrap();
            let mut counts: HashMap<IpAddr, u64> = HashMap::new();
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = socket
                    .recv_from(&mut buf)
                    .unwrap_or_else(|e| panic!("receiver on port {port}: no end marker: {e}"));
                if &buf[..n] == MARKER {
                    return counts;
                }
                *counts.entry(from.ip().to_canonical()).or_default() += 1;
            }
        });
        bound_rx.recv().expect("receiver thread failed to bind");
        Counting { handle }
    }

    /// Sends the end marker (from the allowed marker source, after everything sent so far) and
    /// returns the counts.
    pub fn finish(self, tx: &Netns, port: u16) -> HashMap<IpAddr, u64> {
        tx.run(move || {
            let socket = UdpSocket::bind((MARKER_SRC, 0)).expect("binding the marker source");
            socket
                .send_to(MARKER, (RX_V4, port))
                .expect("sending the marker");
        })
        .join()
        .unwrap();
        self.handle.join().expect("receiver panicked")
    }
}

/// What a sender sent from one source.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Datagrams.
    pub count: u64,
    /// Time from the first to the last datagram.
    pub span: Duration,
}

/// Sends from every source to `port` on the receiver, each source at `pps` for `duration`,
/// round-robin and paced against the clock. Bounded: at most `pps x duration` per source.
pub fn send_paced(
    tx: &Netns,
    sources: Vec<IpAddr>,
    port: u16,
    pps: u32,
    duration: Duration,
) -> HashMap<IpAddr, Sent> {
    tx.run(move || {
        let sockets: Vec<(IpAddr, UdpSocket)> = sources
            .iter()
            .map(|src| {
                (
                    *src,
                    UdpSocket::bind((*src, 0)).expect("binding a source address"),
                )
            })
            .collect();
        let per_source = (f64::from(pps) * duration.as_secs_f64()) as u64;
        let gap = Duration::from_secs_f64(1.0 / f64::from(pps));
        let payload = [0u8; 32];
        let mut first = HashMap::new();
        let mut sent: HashMap<IpAddr, Sent> = HashMap::new();
        let start = Instant::now();
        for round in 0..per_source {
            let due = start + gap * round as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            for (src, socket) in &sockets {
                let dst = target(*src, port);
                socket.send_to(&payload, dst).expect("sending");
                let at = Instant::now();
                let first_at = *first.entry(*src).or_insert(at);
                let entry = sent.entry(*src).or_insert(Sent {
                    count: 0,
                    span: Duration::ZERO,
                });
                entry.count += 1;
                entry.span = at - first_at;
            }
        }
        sent
    })
    .join()
    .expect("sender panicked")
}

/// Sends `count` datagrams back to back from `src` to `port`.
pub fn send_burst(tx: &Netns, src: IpAddr, port: u16, count: u64) {
    tx.run(move || {
        let socket = UdpSocket::bind((src, 0)).expect("binding the source");
        for _ in 0..count {
            socket
                .send_to(&[0u8; 32], target(src, port))
                .expect("sending");
        }
    })
    .join()
    .expect("sender panicked");
}

fn target(src: IpAddr, port: u16) -> SocketAddr {
    match src {
        IpAddr::V4(_) => SocketAddr::from((RX_V4, port)),
        IpAddr::V6(_) => SocketAddr::from((RX_V6, port)),
    }
}

/// Sends raw Ethernet frames out of `interface` through a packet socket; the calling thread must
/// be in the interface's namespace.
pub fn send_frames(interface: &str, frames: &[Vec<u8>]) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let index = nix::net::if_::if_nametoindex(interface).expect("the interface exists");
    // SAFETY: plain socket(2); the descriptor is owned (and closed) by `socket` below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    assert!(
        raw >= 0,
        "packet socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set next.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    for frame in frames {
        // SAFETY: the buffer and address outlive the call; their lengths are passed with them.
        let sent = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&to).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}
