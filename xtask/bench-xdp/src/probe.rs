//! What bench-fleet and bench-crowdsec share (`#[path]`): UDP probes from addresses the sender
//! does not hold, and percentiles of timings.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use anyhow::Result;

/// A UDP socket sending from `source`, an address the sending namespace does not hold
/// (`IP_TRANSPARENT`, as root), so a thousand banned sources need no address each.
pub fn probe_from(source: Ipv4Addr) -> Result<UdpSocket> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::IpTransparent, &true)?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(source, 0)),
    )?;
    Ok(UdpSocket::from(fd))
}

/// The `p` quantile of `sorted`, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
