//! Hand-built Ethernet frames for BPF_PROG_TEST_RUN: IPv4 (any IHL, fragments), IPv6 (with
//! extension headers), VLAN tags, TCP/UDP/ICMP, and ways to cut them short.

use std::net::{Ipv4Addr, Ipv6Addr};

/// EtherTypes.
pub const ETH_P_IP: u16 = 0x0800;
/// IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// 802.1Q.
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// Transport protocol numbers.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// ICMP.
pub const ICMP: u8 = 1;

/// A frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    /// VLAN tag protocol ids, outermost first.
    pub vlans: Vec<u16>,
    /// The network layer and everything after it.
    pub l3: L3,
    /// Padding bytes appended after the transport header.
    pub payload: usize,
}

/// Network layer.
#[derive(Clone, Debug)]
pub enum L3 {
    /// IPv4.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Header length in 32-bit words (5..=15).
        ihl: u8,
        /// Fragment offset in 8-byte units.
        frag_offset: u16,
        /// Transport.
        l4: L4,
    },
    /// IPv6.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Extension headers: (type, total length in bytes, multiple of 8).
        ext: Vec<(u8, usize)>,
        /// Fragment header (offset in 8-byte units), if any.
        fragment: Option<u16>,
        /// Transport.
        l4: L4,
    },
    /// Another EtherType with raw bytes.
    Other(u16, Vec<u8>),
}

/// Transport layer.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// A TCP SYN to a port.
    Tcp(u16),
    /// A TCP segment to a port with these flags (0x10 ACK, 0x18 PSH+ACK, ...).
    TcpFlags(u16, u8),
    /// UDP to a port.
    Udp(u16),
    /// ICMP echo.
    Icmp,
}

impl L4 {
    fn proto(self, v6: bool) -> u8 {
        match self {
            L4::Tcp(_) | L4::TcpFlags(..) => TCP,
            L4::Udp(_) => UDP,
            L4::Icmp if v6 => 58,
            L4::Icmp => ICMP,
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            L4::Tcp(port) => L4::TcpFlags(port, 0x02).bytes(),
            L4::TcpFlags(port, flags) => {
                let mut h = vec![0u8; 20];
                h[0..2].copy_from_slice(&40000u16.to_be_bytes());
                h[2..4].copy_from_slice(&port.to_be_bytes());
                h[12] = 5 << 4;
                h[13] = flags;
                h
            }
            L4::Udp(port) => {
                let mut h = vec![0u8; 8];
                h[0..2].copy_from_slice(&40000u16.to_be_bytes());
                h[2..4].copy_from_slice(&port.to_be_bytes());
                h
            }
            L4::Icmp => vec![8, 0, 0, 0, 0, 1, 0, 1],
        }
    }
}

/// A UDP/IPv4 frame from `src` to `port`.
pub fn udp4(src: Ipv4Addr, port: u16) -> Frame {
    v4(src, L4::Udp(port))
}

/// An IPv4 frame.
pub fn v4(src: Ipv4Addr, l4: L4) -> Frame {
    Frame {
        vlans: Vec::new(),
        l3: L3::V4 {
            src,
            ihl: 5,
            frag_offset: 0,
            l4,
        },
        payload: 18,
    }
}

/// An IPv6 frame.
pub fn v6(src: Ipv6Addr, l4: L4) -> Frame {
    Frame {
        vlans: Vec::new(),
        l3: L3::V6 {
            src,
            ext: Vec::new(),
            fragment: None,
            l4,
        },
        payload: 18,
    }
}

impl Frame {
    /// Adds VLAN tags (outermost first).
    pub fn vlan(mut self, tpids: &[u16]) -> Frame {
        self.vlans = tpids.to_vec();
        self
    }

    /// The bytes of the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut out = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        let ethertype = match &self.l3 {
            L3::V4 { .. } => ETH_P_IP,
            L3::V6 { .. } => ETH_P_IPV6,
            L3::Other(t, _) => *t,
        };
        for (i, tpid) in self.vlans.iter().enumerate() {
            out.extend_from_slice(&tpid.to_be_bytes());
            let _ = i;
            out.extend_from_slice(&(100u16 + i as u16).to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        match &self.l3 {
            L3::V4 {
                src,
                ihl,
                frag_offset,
                l4,
            } => {
                let l4_bytes = l4.bytes();
                let header_len = usize::from(*ihl) * 4;
                let total = header_len + l4_bytes.len() + self.payload;
                let mut h = vec![0u8; header_len.max(20)];
                h[0] = 0x40 | (ihl & 0x0f);
                h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                h[6..8].copy_from_slice(&(frag_offset & 0x1fff).to_be_bytes());
                h[8] = 64;
                h[9] = l4.proto(false);
                h[12..16].copy_from_slice(&src.octets());
                h[16..20].copy_from_slice(&[10, 201, 0, 2]);
                out.extend_from_slice(&h[..header_len.max(20).min(h.len())]);
                if *frag_offset == 0 {
                    out.extend_from_slice(&l4_bytes);
                }
            }
            L3::V6 {
                src,
                ext,
                fragment,
                l4,
            } => {
                let l4_bytes = l4.bytes();
                let mut chain: Vec<(u8, Vec<u8>)> = ext
                    .iter()
                    .map(|(kind, len)| {
                        let mut b = vec![0u8; *len];
                        b[1] = (*len / 8 - 1) as u8;
                        (*kind, b)
                    })
                    .collect();
                if let Some(offset) = fragment {
                    let mut b = vec![0u8; 8];
                    b[2..4].copy_from_slice(&(offset << 3).to_be_bytes());
                    chain.push((44, b));
                }
                let mut next_headers: Vec<u8> = chain.iter().map(|(k, _)| *k).collect();
                next_headers.push(l4.proto(true));
                let ext_len: usize = chain.iter().map(|(_, b)| b.len()).sum();
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[4..6].copy_from_slice(
                    &((ext_len + l4_bytes.len() + self.payload) as u16).to_be_bytes(),
                );
                h[6] = next_headers[0];
                h[7] = 64;
                h[8..24].copy_from_slice(&src.octets());
                h[24..40].copy_from_slice(&Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2).octets());
                out.extend_from_slice(&h);
                for (i, (_, mut b)) in chain.into_iter().enumerate() {
                    b[0] = next_headers[i + 1];
                    out.extend_from_slice(&b);
                }
                out.extend_from_slice(&l4_bytes);
            }
            L3::Other(_, bytes) => out.extend_from_slice(bytes),
        }
        out.extend(std::iter::repeat_n(0u8, self.payload));
        out
    }
}
