//! The XDP program tells connections from floods: a TCP segment other than a SYN passes when
//! the kernel knows its connection (never charged to its source's budget) and is dropped when
//! it belongs to none. Through BPF_PROG_TEST_RUN against real sockets of the test's own network
//! namespace, and with the real daemon attached to a veth: a bulk transfer far over the
//! per-source packet rate, and an ACK flood from spoofed sources, over IPv4 and IPv6.

use crate::support;

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use api_shield_common::Reason;
use support::{
    fastpath_setup::{v4_sources, v6_sources, Setup, BURST, PROTECTED, RATE},
    frames::{self, L4},
    netns::{RX_V4, RX_V6},
    prog_test::{Harness, XDP_DROP, XDP_PASS},
};

/// An Ethernet frame carrying a TCP segment from `from` to `to` with `flags` (20-byte header).
fn segment(from: SocketAddr, to: SocketAddr, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&from.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&to.port().to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            frame.extend(ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            frame.extend(ip);
        }
        _ => panic!("one family per segment"),
    }
    frame.extend(tcp);
    frame
}

#[test]
fn segments_of_a_kernel_connection_pass_uncharged_and_others_drop() {
    let test = "segments_of_a_kernel_connection_pass_uncharged_and_others_drop";
    for loopback in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        // A real connection in the test's namespace, which BPF_PROG_TEST_RUN looks sockets up in.
        let listener = TcpListener::bind((loopback, 0)).unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        let client = client.local_addr().unwrap();
        let config = format!(
            "[fastpath]\n[fastpath.limiter]\nrate = 1\nburst = 2\n\
             [fastpath.limiter.protect]\ntcp = [{}]\n",
            server.port()
        );
        let Some(h) = Harness::new(test, &config) else {
            return;
        };
        // Its source spends its budget on SYNs and is over it from then on.
        let syn = segment(client, server, 0x02);
        assert_eq!(h.run(&syn), XDP_PASS);
        assert_eq!(h.run(&syn), XDP_PASS);
        assert_eq!(h.run(&syn), XDP_DROP, "{loopback}: over budget");
        // Yet its connection's segments pass, however many, and are never charged.
        for flags in [0x10, 0x18, 0x11] {
            for _ in 0..50 {
                assert_eq!(
                    h.run(&segment(client, server, flags)),
                    XDP_PASS,
                    "{loopback}"
                );
            }
        }
        // A segment of no connection: another client port, or the listener's port alone.
        let mut stranger = client;
        stranger.set_port(if client.port() == 65535 {
            1024
        } else {
            client.port() + 1
        });
        assert_eq!(h.run(&segment(stranger, server, 0x10)), XDP_DROP);
        assert_eq!(h.run(&segment(stranger, server, 0x04)), XDP_DROP);
        let stats = h.stats();
        assert_eq!(stats.packets(Reason::PassFlow), 150, "{loopback}");
        assert_eq!(stats.packets(Reason::DropNoFlow), 2, "{loopback}");
        assert_eq!(stats.packets(Reason::PassWithinLimit), 2, "{loopback}");
        assert_eq!(stats.packets(Reason::DropRateLimited), 1, "{loopback}");
    }
}

#[test]
fn a_bulk_transfer_far_over_the_packet_rate_is_never_charged() {
    let Some((_serial, setup)) = Setup::new(
        "a_bulk_transfer_far_over_the_packet_rate_is_never_charged",
        "",
    ) else {
        return;
    };
    let _daemon = setup.daemon();
    const BYTES: usize = 8 << 20;
    for server_ip in [IpAddr::V4(RX_V4), IpAddr::V6(RX_V6)] {
        let server = SocketAddr::new(server_ip, PROTECTED);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let receiver = setup.topo.rx.run(move || {
            let listener = TcpListener::bind(server).unwrap();
            bound_tx.send(()).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let mut total = 0;
            let mut buffer = vec![0u8; 64 << 10];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n,
                    Err(error) => return Err(format!("after {total} bytes: {error}")),
                }
            }
        });
        bound_rx.recv().unwrap();
        let started = Instant::now();
        let sender = setup.topo.tx.run(move || {
            let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(10)).unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream.write_all(&vec![0x5a; BYTES]).unwrap();
        });
        sender.join().unwrap();
        let received = receiver.join().unwrap();
        let elapsed = started.elapsed();
        assert_eq!(received, Ok(BYTES), "{server_ip}");
        // Several thousand segments went past a limiter that would let the source through with
        // BURST + RATE x time packets: none of them was charged to it.
        let stats = setup.stats();
        let allowance = BURST as f64 + RATE as f64 * elapsed.as_secs_f64();
        assert!(
            stats.packets(Reason::PassFlow) as f64 > 10.0 * allowance,
            "{server_ip}: {} segments passed as a flow in {elapsed:?}",
            stats.packets(Reason::PassFlow)
        );
        assert_eq!(stats.packets(Reason::DropRateLimited), 0, "{server_ip}");
    }
}

#[test]
fn an_ack_flood_from_spoofed_sources_is_dropped() {
    let Some((_serial, setup)) = Setup::new("an_ack_flood_from_spoofed_sources_is_dropped", "")
    else {
        return;
    };
    let _daemon = setup.daemon();
    let mut sources = v4_sources(3, 200);
    sources.extend(v6_sources(200));
    let frames: Vec<Vec<u8>> = sources
        .iter()
        .flat_map(|src| {
            let frame = match src {
                IpAddr::V4(v4) => frames::v4(*v4, L4::TcpFlags(PROTECTED, 0x10)),
                IpAddr::V6(v6) => frames::v6(*v6, L4::TcpFlags(PROTECTED, 0x10)),
            };
            std::iter::repeat_n(frame.build(), 10)
        })
        .collect();
    // In batches smaller than the veth's ring, each counted before the next is sent: the
    // program runs on the receiver's side of the pair, after `send` returns.
    let mut sent = 0u64;
    for batch in frames.chunks(100) {
        let (tx_if, batch) = (setup.topo.tx_if.clone(), batch.to_vec());
        sent += batch.len() as u64;
        setup
            .topo
            .tx
            .run(move || support::traffic::send_frames(&tx_if, &batch))
            .join()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while setup.stats().packets(Reason::DropNoFlow) < sent && Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(setup.stats().packets(Reason::DropNoFlow), sent);
    }
    let stats = setup.stats();
    assert_eq!(stats.packets(Reason::DropNoFlow), frames.len() as u64);
    assert_eq!(stats.packets(Reason::PassFlow), 0);
    assert_eq!(stats.packets(Reason::PassWithinLimit), 0);
}

#[test]
fn a_source_that_completes_a_handshake_keeps_its_own_budget_during_a_spoofed_syn_flood() {
    let Some((_serial, setup)) = Setup::new(
        "a_source_that_completes_a_handshake_keeps_its_own_budget_during_a_spoofed_syn_flood",
        "",
    ) else {
        return;
    };
    // No new source is ever tracked on its first packet: every never-seen source shares an
    // untracked budget of one packet a second.
    setup
        .add_limiter_settings("new_sources_per_cpu = 0\nuntracked_rate = 1\nuntracked_burst = 1\n");
    let _daemon = setup.daemon();
    let server = SocketAddr::new(IpAddr::V4(RX_V4), PROTECTED);
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let accepting = setup.topo.rx.run(move || {
        let listener = TcpListener::bind(server).unwrap();
        bound_tx.send(()).unwrap();
        // The first connection and the five after the flood.
        (0..6)
            .map(|_| listener.accept().map(|(stream, _)| stream))
            .collect::<Result<Vec<_>, _>>()
    });
    bound_rx.recv().unwrap();
    let connect = move || TcpStream::connect_timeout(&server, Duration::from_secs(10));
    // The client's first SYN takes the one untracked packet; its handshake completes.
    let first = setup.topo.tx.run(connect).join().unwrap().unwrap();
    let client = first.local_addr().unwrap().ip();
    let tracked = |ip: IpAddr| {
        let maps = api_shield::fastpath::PinnedMaps::open(&setup.pins.layout()).unwrap();
        let key = match ip {
            IpAddr::V4(v4) => api_shield_common::v4_mapped(v4.octets()),
            IpAddr::V6(v6) => v6.octets(),
        };
        maps.limiter.get(&key, 0).is_ok()
    };
    assert!(
        tracked(client),
        "a source that completed a handshake is tracked"
    );
    // A spoofed SYN flood: never-seen sources, all dropped on the spent untracked budget.
    let spoofed = v4_sources(4, 250);
    let frames: Vec<Vec<u8>> = spoofed
        .iter()
        .map(|src| match src {
            IpAddr::V4(v4) => frames::v4(*v4, L4::Tcp(PROTECTED)).build(),
            IpAddr::V6(v6) => frames::v6(*v6, L4::Tcp(PROTECTED)).build(),
        })
        .collect();
    let flood = frames.len() as u64;
    let start = setup.stats();
    let tx_if = setup.topo.tx_if.clone();
    setup
        .topo
        .tx
        .run(move || support::traffic::send_frames(&tx_if, &frames))
        .join()
        .unwrap();
    // Each spoofed SYN is counted once: dropped, or passed on a token the untracked budget
    // regained (one a second).
    let judged = |stats: &api_shield::fastpath::Stats| {
        stats.packets(Reason::DropUntracked) + stats.packets(Reason::PassWithinLimit)
            - start.packets(Reason::DropUntracked)
            - start.packets(Reason::PassWithinLimit)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while judged(&setup.stats()) < flood && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let before = setup.stats();
    assert_eq!(judged(&before), flood);
    let dropped = before.packets(Reason::DropUntracked) - start.packets(Reason::DropUntracked);
    assert!(dropped >= flood / 2, "{dropped} of {flood} dropped");
    assert!(spoofed.iter().all(|src| !tracked(*src)));
    // The client's next connections are charged to its own budget: each SYN passes at once.
    for _ in 0..5 {
        setup.topo.tx.run(connect).join().unwrap().unwrap();
    }
    let accepted = accepting.join().unwrap().unwrap();
    assert_eq!(accepted.len(), 6);
    let after = setup.stats();
    assert_eq!(
        after.packets(Reason::PassWithinLimit) - before.packets(Reason::PassWithinLimit),
        5
    );
    assert_eq!(
        after.packets(Reason::DropUntracked),
        before.packets(Reason::DropUntracked)
    );
    drop(first);
}
