//! The floods bench-flood runs, all from the generator (`bench_flood_sources`, or its
//! packet-socket twin) in the sender namespace: as fast as it goes, or a share of its frames;
//! and the sink the ceiling's flood is sent into instead of the receiver.

use std::net::{Ipv4Addr, SocketAddrV4};

use anyhow::{Context as _, Result};

use crate::{
    generator::{tcp_frame, udp_frame, Flood},
    topology::{ip, Topology},
};

/// `FLOOD_SPEC` slot 1 values of the generator (see `xtask/flood-ebpf`).
const L4_TCP: u32 = 1;
const L4_UDP: u32 = 2;
/// `FLOOD_SPEC` slot 0 value for a fresh random IPv4 source on every frame.
const ANY_SOURCE: u32 = 0;
/// Sources of the botnet: each sends under the per-source rate as long as the whole flood stays
/// under `BOTNET_SOURCES` x 1000 packets/s.
pub const BOTNET_SOURCES: u32 = 10_000;

/// What the sender floods the receiver's port 443 with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    None,
    /// TCP SYNs, a random source address (and port) on every frame.
    SynRandom,
    /// TCP ACKs of no connection, random sources.
    AckRandom,
    /// UDP datagrams, random sources.
    UdpRandom,
    /// TCP SYNs from one address (random ports).
    OneSource,
    /// TCP SYNs from 10 000 addresses, each under the per-source rate.
    Botnet,
}

impl Attack {
    /// Every attack, the calm first.
    pub const ALL: [Attack; 6] = [
        Attack::None,
        Attack::SynRandom,
        Attack::AckRandom,
        Attack::UdpRandom,
        Attack::OneSource,
        Attack::Botnet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Attack::None => "no attack",
            Attack::SynRandom => "SYN flood, random sources",
            Attack::AckRandom => "ACK flood, random sources",
            Attack::UdpRandom => "UDP flood, random sources",
            Attack::OneSource => "SYN flood, one source",
            Attack::Botnet => "SYN botnet, 10 000 sources",
        }
    }

    /// The generator's flood for this attack, transmitting `share` of its frames (1: all).
    pub fn flood(self, topology: &Topology, rx: Ipv4Addr, share: f64) -> Option<Flood> {
        let (tx_mac, rx_mac) = (topology.tx_mac, topology.rx_mac);
        let from = SocketAddrV4::new(Ipv4Addr::new(10, 203, 0, 1), 40000);
        let to = SocketAddrV4::new(rx, 443);
        let (frame, spec) = match self {
            Attack::None => return None,
            Attack::SynRandom => (
                tcp_frame(tx_mac, rx_mac, from, to, SYN),
                [ANY_SOURCE, L4_TCP],
            ),
            Attack::AckRandom => (
                tcp_frame(tx_mac, rx_mac, from, to, ACK),
                [ANY_SOURCE, L4_TCP],
            ),
            Attack::UdpRandom => {
                let mut frame = udp_frame(tx_mac, rx_mac, from.ip().octets());
                // Destination port 443 (the datagram carries no checksum to update).
                frame[36..38].copy_from_slice(&443u16.to_be_bytes());
                (frame, [ANY_SOURCE, L4_UDP])
            }
            Attack::OneSource => (tcp_frame(tx_mac, rx_mac, from, to, SYN), [1, L4_TCP]),
            Attack::Botnet => (
                tcp_frame(tx_mac, rx_mac, from, to, SYN),
                [BOTNET_SOURCES, L4_TCP],
            ),
        };
        // Out of 2^32; 0 transmits every frame.
        let share = if share >= 1.0 {
            0
        } else {
            (share.max(1e-6) * f64::from(u32::MAX)) as u32
        };
        Some(Flood {
            program: "bench_flood_sources",
            frame,
            spec: Some([spec[0], spec[1], share]),
            interface: None,
        })
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Adds a veth pair of its own, `name` and `name-p`, to the sender namespace (it goes with the
/// namespace) and returns the index of `name`, which is up while its peer stays down: with no
/// carrier, the kernel frees each frame the packet socket built at transmit, before any driver
/// or receiver sees it. A flood sent there costs the attacker the making of each frame, less
/// the veth's transmit, and none of it reaches the receiver. (The kernels this runs on may lack
/// the `dummy` device, which would do the same.)
pub fn sink(topology: &Topology, name: &str) -> Result<u32> {
    let peer = format!("{name}-p");
    let ns = topology.tx_ns.as_str();
    ip(&[
        "-n", ns, "link", "add", name, "type", "veth", "peer", "name", &peer,
    ])?;
    ip(&["-n", ns, "link", "set", name, "up"])?;
    let out = ip(&["-n", ns, "-j", "link", "show", "dev", name])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let index = json[0]["ifindex"].as_u64().context("the sink's ifindex")?;
    Ok(u32::try_from(index)?)
}
