//! SYN cookies from the NIC: during a SYN flood from spoofed sources that fills the listener's
//! SYN queue, the SYNs of sources that have never completed a handshake (the flood's and
//! never-seen clients') are answered by the XDP program with the kernel's own cookie, and the
//! clients' handshakes complete in the kernel. The real daemon attached in driver mode to a veth
//! in namespaces, a real listener, real clients; IPv4 and IPv6; sources untracked (sharing a
//! spent budget) and tracked (each within a budget of its own, as a botnet under the per-source
//! rate). Without the answer, a never-seen client's SYN would be dropped with the flood in the
//! first case (the untracked budget regains one packet a second here).

use crate::support;

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use api_shield_common::Reason;
use support::{
    fastpath_setup::{v4_sources, Setup, PROTECTED},
    frames::{self, L4},
    netns::{mac, RX_V4, RX_V6},
    privileged::PinDir,
    prog_test::{Harness, BASE, SRC, SRC6, XDP_PASS},
};

/// Never-seen clients connecting during the flood, each from an address of its own.
const CLIENTS: usize = 5;
/// Spoofed sources of the flood.
const SPOOFED: u16 = 200;
/// Rounds of the flood at most (it stops when the clients are done).
const MAX_ROUNDS: usize = 2000;

#[test]
fn never_seen_clients_connect_during_a_spoofed_syn_flood_over_ipv4() {
    never_seen_clients_connect_during_a_spoofed_syn_flood(
        "never_seen_clients_connect_during_a_spoofed_syn_flood_over_ipv4",
        false,
        Budgets::Untracked,
    );
}

#[test]
fn never_seen_clients_connect_during_a_spoofed_syn_flood_over_ipv6() {
    never_seen_clients_connect_during_a_spoofed_syn_flood(
        "never_seen_clients_connect_during_a_spoofed_syn_flood_over_ipv6",
        true,
        Budgets::Untracked,
    );
}

#[test]
fn never_seen_clients_connect_during_a_syn_flood_from_sources_within_their_budgets() {
    never_seen_clients_connect_during_a_spoofed_syn_flood(
        "never_seen_clients_connect_during_a_syn_flood_from_sources_within_their_budgets",
        false,
        Budgets::Own,
    );
}

/// Whose budget the flood's and the clients' SYNs are charged to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Budgets {
    /// No source is tracked on its first packet: all share an untracked budget of 32 packets
    /// at once and one a second, which the flood spends.
    Untracked,
    /// Every source is tracked on its first packet with a budget of its own (the setup's).
    Own,
}

fn never_seen_clients_connect_during_a_spoofed_syn_flood(test: &str, v6: bool, budgets: Budgets) {
    let Some((_serial, setup)) = Setup::new(test, "") else {
        return;
    };
    // Either way the flood's first SYNs reach the kernel and fill the listener's SYN queue.
    if budgets == Budgets::Untracked {
        setup.add_limiter_settings(
            "new_sources_per_cpu = 0\nuntracked_rate = 1\nuntracked_burst = 32\n",
        );
    }
    let topo = &setup.topo;
    // The program's SYN-ACKs leave through the receiver's veth with XDP_TX, which a veth hands
    // on only to a peer with an XDP program of its own (a NIC needs nothing): the sender's veth
    // gets api-shield's program with no settings written, which passes everything.
    let sender_pins = PinDir::new();
    let _sender_pass = {
        let layout = sender_pins.layout();
        let tx_if = topo.tx_if.clone();
        topo.tx
            .run(move || {
                let mut ebpf = api_shield::fastpath::load_program(
                    &layout,
                    &api_shield::config::FastpathConfig::default(),
                )
                .unwrap();
                let program: &mut aya::programs::Xdp = ebpf
                    .program_mut(api_shield_common::maps::PROGRAM)
                    .unwrap()
                    .try_into()
                    .unwrap();
                program
                    .attach(&tx_if, aya::programs::XdpMode::Driver)
                    .unwrap();
                ebpf
            })
            .join()
            .unwrap()
    };
    let clients: Vec<IpAddr> = if v6 {
        // Each in a /64 of its own (the limiter groups a /64); the receiver routes the clients'
        // and the spoofed sources' prefixes back over the link (the kernel queues a SYN only
        // when it has a route for its SYN-ACK).
        topo.rx
            .exec(&["-6", "route", "add", "fd00:201::/48", "dev", &topo.rx_if]);
        (1..=CLIENTS as u16)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0x201, 0, 0x300 + i, 0, 0, 0, 1)))
            .collect()
    } else {
        v4_sources(60, CLIENTS as u8)
    };
    topo.add_sources(&clients);
    let _daemon = setup.daemon();

    let server = if v6 {
        SocketAddr::new(IpAddr::V6(RX_V6), PROTECTED)
    } else {
        SocketAddr::new(IpAddr::V4(RX_V4), PROTECTED)
    };
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let serving = topo.rx.run(move || {
        let listener = TcpListener::bind(server).unwrap();
        // A short SYN queue, which the flood's first SYNs fill (a busy server's is longer, and
        // a longer flood fills it the same way).
        // SAFETY: listen(2) on a socket this thread owns.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4) }, 0);
        bound_tx.send(()).unwrap();
        // Each client sends "ping" and is answered "pong".
        for _ in 0..CLIENTS {
            let (mut stream, _) = listener.accept().unwrap();
            let mut ping = [0u8; 4];
            stream.read_exact(&mut ping).unwrap();
            assert_eq!(&ping, b"ping");
            stream.write_all(b"pong").unwrap();
        }
    });
    bound_rx.recv().unwrap();

    // The flood: SYNs with valid checksums (the kernel takes the first ones into its SYN queue)
    // from spoofed sources, in rounds until the clients are done.
    let rx_mac = parse_mac(&mac(&topo.rx, &topo.rx_if));
    let tx_mac = parse_mac(&mac(&topo.tx, &topo.tx_if));
    let frames: Vec<Vec<u8>> = (0..SPOOFED)
        .map(|i| {
            let src = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x201, 0, 0x500 + i, 0, 0, 0, 1))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    10,
                    201,
                    70 + (i / 250) as u8,
                    (i % 250) as u8 + 1,
                ))
            };
            syn_frame(tx_mac, rx_mac, SocketAddr::new(src, 40000 + i), server)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        let tx_if = topo.tx_if.clone();
        topo.tx.run(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) && rounds < MAX_ROUNDS {
                support::traffic::send_frames(&tx_if, &frames);
                rounds += 1;
            }
            rounds
        })
    };
    // Clients connect once the program has answered the flood with cookies: the kernel's SYN
    // queue is full (and stays so: the spoofed sources' half-open requests wait a minute for
    // ACKs that never come).
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.stats().packets(Reason::AnswerSynCookie) == 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let answered_before = setup.stats().packets(Reason::AnswerSynCookie);
    assert!(
        answered_before > 0,
        "no SYN of the flood was answered with a cookie"
    );

    let results: Vec<(IpAddr, bool)> = clients
        .iter()
        .map(|client| {
            let client = *client;
            topo.tx
                .run(move || {
                    let mut stream = connect_from(client, server);
                    stream.write_all(b"ping").unwrap();
                    let mut pong = [0u8; 4];
                    stream.read_exact(&mut pong).unwrap();
                    assert_eq!(&pong, b"pong");
                    (client, has_timestamps(&stream))
                })
                .join()
                .unwrap()
        })
        .collect();
    stop.store(true, Ordering::Relaxed);
    let rounds = flooding.join().unwrap();
    serving.join().unwrap();

    // Every client connected and was served, each on the program's cookie: a connection made
    // on it runs without timestamps (its SYN-ACK offers none), while the kernel's own
    // handshakes, its cookies included, keep the timestamps the client offered.
    let from_the_nic = results.iter().filter(|(_, ts)| !ts).count();
    assert_eq!(
        from_the_nic, CLIENTS,
        "clients answered from the NIC (false) and by the kernel (true): {results:?} after \
         {rounds} rounds"
    );
    let stats = setup.stats();
    assert!(stats.packets(Reason::AnswerSynCookie) >= answered_before + from_the_nic as u64);
    // Each answered client completed its handshake through the program, which tracks it.
    let maps = api_shield::fastpath::PinnedMaps::open(&setup.pins.layout()).unwrap();
    for (client, _) in &results {
        let key = match client {
            IpAddr::V4(v4) => api_shield_common::v4_mapped(v4.octets()),
            // The limiter keys IPv6 by its /64.
            IpAddr::V6(v6) => (u128::from(*v6) & !u128::from(u64::MAX)).to_be_bytes(),
        };
        assert!(
            maps.limiter.get(&key, 0).is_ok(),
            "{client} completed a handshake and is tracked"
        );
    }
}

/// The `XDP_TX` action.
const XDP_TX: u32 = 3;

#[test]
fn the_answer_is_the_syn_ack_written_in_place_over_ipv4_and_ipv6() {
    // The test runs look sockets up in the calling thread's network namespace: a thread of its
    // own enters a new one, with a listener on the frames' destination.
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.201.0.2/32", "dev", "lo"],
            &["addr", "add", "fd00:201::2/128", "dev", "lo", "nodad"],
        ] {
            assert!(std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success());
        }
        let Some(h) = Harness::new(
            "the_answer_is_the_syn_ack_written_in_place_over_ipv4_and_ipv6",
            BASE,
        ) else {
            return;
        };
        let _v4 = TcpListener::bind((RX_V4, 9000)).unwrap();
        let _v6 = TcpListener::bind((RX_V6, 9000)).unwrap();
        // The namespace's default: cookies only once a SYN queue is full, which these
        // listeners' are not. The program answers nothing, and the SYN passes untouched.
        let syn = frames::v4(SRC, L4::Tcp(9000))
            .vlan(&[frames::ETH_P_8021Q])
            .build();
        assert_eq!(h.run_out(&syn), (XDP_PASS, syn.clone()));
        // Cookies for every SYN, as the kernel sends them once a queue is full.
        std::fs::write("/proc/sys/net/ipv4/tcp_syncookies", "2").unwrap();
        let cases = [
            (
                frames::v4(SRC, L4::Tcp(9000)).vlan(&[frames::ETH_P_8021Q]),
                18,
            ),
            (frames::v6(SRC6, L4::Tcp(9000)), 14),
        ];
        for (frame, l3) in cases {
            let syn = frame.build();
            let (action, reply) = h.run_out(&syn);
            assert_eq!(action, XDP_TX, "{frame:?}");
            check_syn_ack(&syn, &reply, l3);
        }
        assert_eq!(h.stats().packets(Reason::AnswerSynCookie), 2);
    })
    .join()
    .unwrap();
}

/// Holds `reply` to be the SYN-ACK for `syn` (IP header at `l3` in both): MACs and addresses
/// swapped, VLAN tags kept, ports swapped, the SYN's sequence number plus one acknowledged, the
/// MSS option, valid checksums, nothing after the 24-byte TCP header.
fn check_syn_ack(syn: &[u8], reply: &[u8], l3: usize) {
    assert_eq!(reply[0..6], syn[6..12], "to the SYN's sender");
    assert_eq!(reply[6..12], syn[0..6], "from the MAC it was sent to");
    assert_eq!(reply[12..l3], syn[12..l3], "EtherType and VLAN tags kept");
    let v6 = syn[l3] >> 4 == 6;
    let (ip_len, src, dst) = if v6 {
        (40, 8..24, 24..40)
    } else {
        (20, 12..16, 16..20)
    };
    let l4 = l3 + ip_len;
    assert_eq!(reply.len(), l4 + 24, "headers only");
    let (ip, syn_ip) = (&reply[l3..l4], &syn[l3..l4]);
    assert_eq!(ip[src.clone()], syn_ip[dst.clone()]);
    assert_eq!(ip[dst.clone()], syn_ip[src.clone()]);
    if v6 {
        assert_eq!(
            ip[4..8],
            [0, 24, 6, 64],
            "payload length, next header, hop limit"
        );
    } else {
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[2..4], 44u16.to_be_bytes());
        assert_eq!(ip[9], 6);
        assert_eq!(checksum(ip), 0, "IPv4 header checksum");
    }
    let (tcp, syn_tcp) = (&reply[l4..], &syn[l4..]);
    assert_eq!(tcp[0..2], syn_tcp[2..4]);
    assert_eq!(tcp[2..4], syn_tcp[0..2]);
    let syn_seq = u32::from_be_bytes(syn_tcp[4..8].try_into().unwrap());
    assert_eq!(tcp[8..12], syn_seq.wrapping_add(1).to_be_bytes());
    assert_eq!(tcp[12], 6 << 4, "a 24-byte header");
    assert_eq!(tcp[13], 0x12, "SYN and ACK");
    assert_eq!(tcp[20..22], [2, 4], "the MSS option");
    assert!(u16::from_be_bytes([tcp[22], tcp[23]]) >= 536);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&ip[src]);
    pseudo.extend_from_slice(&ip[dst]);
    pseudo.extend_from_slice(&[0, 6, 0, 24]);
    pseudo.extend_from_slice(tcp);
    assert_eq!(checksum(&pseudo), 0, "TCP checksum");
}

/// A TCP connection from `local` to `server`, within ten seconds.
fn connect_from(local: IpAddr, server: SocketAddr) -> TcpStream {
    use nix::sys::socket::{
        bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    let family = if local.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(local, 0)),
    )
    .unwrap();
    // A blocking connect gives up after the SYN's retransmissions (over a minute); the test's
    // bound is ten seconds.
    let timeout = libc::timeval {
        tv_sec: 10,
        tv_usec: 0,
    };
    // SAFETY: setsockopt(2) with a timeval that outlives the call.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    assert_eq!(set, 0);
    connect(fd.as_raw_fd(), &SockaddrStorage::from(server))
        .unwrap_or_else(|e| panic!("{local} connecting to {server}: {e}"));
    let stream = TcpStream::from(fd);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Whether the connection negotiated TCP timestamps (`TCP_INFO`'s `tcpi_options`).
fn has_timestamps(stream: &TcpStream) -> bool {
    // SAFETY: all-zero is a valid tcp_info; getsockopt(2) fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as u32;
    // SAFETY: as above; the pointers outlive the call.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(got, 0);
    const TCPI_OPT_TIMESTAMPS: u8 = 1;
    info.tcpi_options & TCPI_OPT_TIMESTAMPS != 0
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// An Ethernet frame with a TCP SYN from `from` to `to` (MSS option, valid checksums), as a
/// client's would be.
fn syn_frame(src_mac: [u8; 6], dst_mac: [u8; 6], from: SocketAddr, to: SocketAddr) -> Vec<u8> {
    let mut tcp = vec![0u8; 24];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[4..8].copy_from_slice(
        &0x1234_5678u32
            .wrapping_add(u32::from(from.port()))
            .to_be_bytes(),
    );
    tcp[12] = 6 << 4;
    tcp[13] = 0x02;
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    let mut frame = Vec::with_capacity(80);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    let mut pseudo = Vec::new();
    match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&44u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let check = checksum(&ip);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            frame.extend(ip);
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&[0, 6, 0, 24]);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&24u16.to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            frame.extend(ip);
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&[0, 0, 0, 24, 0, 0, 0, 6]);
        }
        _ => panic!("one family per frame"),
    }
    pseudo.extend_from_slice(&tcp);
    let check = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    frame.extend(tcp);
    frame
}

/// The Internet checksum (RFC 1071) of `bytes` (an even number).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
