//! Addresses and networks as the maps store them: 16 bytes, IPv4 mapped into IPv6.

use std::net::IpAddr;

use api_shield_common::{v4_mapped, v4_mapped_prefix, Addr};
use aya::maps::lpm_trie::Key;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A string that is not an address or network an entry can be made of.
#[derive(Debug, thiserror::Error)]
pub enum AddrError {
    /// Not an address or CIDR at all.
    #[error("`{input}` is not an IP address or CIDR (e.g. 203.0.113.7, 2001:db8::/64)")]
    NotAnAddress {
        /// What was given.
        input: String,
    },
    /// A CIDR with host bits set (`10.0.0.7/24`), refused as `ip route` does.
    #[error(transparent)]
    HostBits(#[from] crate::config::GuardError),
}

/// Parses `ADDR` or `ADDR/LEN`; a network with host bits set is refused.
pub fn parse_target(input: &str) -> Result<IpNet, AddrError> {
    match crate::config::parse_network(input) {
        Some(parsed) => Ok(parsed?),
        None => Err(AddrError::NotAnAddress {
            input: input.to_owned(),
        }),
    }
}

/// The LPM key of a network.
pub fn target_key(net: &IpNet) -> Key<Addr> {
    match net {
        IpNet::V4(v4) => Key::new(
            v4_mapped_prefix(u32::from(v4.prefix_len())),
            v4_mapped(v4.network().octets()),
        ),
        IpNet::V6(v6) => Key::new(u32::from(v6.prefix_len()), v6.network().octets()),
    }
}

/// The network of an LPM key (IPv4-mapped keys come back as IPv4).
pub(super) fn key_net(key: &Key<Addr>) -> IpNet {
    let addr = std::net::Ipv6Addr::from(key.data());
    let prefix = key.prefix_len().min(128) as u8;
    match addr.to_ipv4_mapped() {
        Some(v4) if prefix >= 96 => IpNet::V4(Ipv4Net::new(v4, prefix - 96).expect("prefix <= 32")),
        _ => IpNet::V6(Ipv6Net::new(addr, prefix).expect("prefix <= 128")),
    }
}

/// A 16-byte address from an event, as an `IpAddr`.
pub(super) fn addr_ip(addr: &Addr) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*addr);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_networks() {
        assert_eq!(parse_target("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(
            parse_target("10.1.2.0/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
        assert!(matches!(
            parse_target("10.1.2.3/24"),
            Err(AddrError::HostBits(_))
        ));
        assert!(parse_target("2001:db8::1/64").is_err());
        assert!(parse_target("10.1.2.300").is_err());
        assert!(parse_target("10.0.0.0/33").is_err());
        assert!(parse_target("bad").is_err());
    }

    #[test]
    fn keys_round_trip() {
        for text in [
            "10.1.2.0/24",
            "192.0.2.7/32",
            "2001:db8::/48",
            "::/0",
            "0.0.0.0/0",
        ] {
            let net = parse_target(text).unwrap();
            assert_eq!(key_net(&target_key(&net)), net, "{text}");
        }
        let key = target_key(&parse_target("10.0.0.0/8").unwrap());
        assert_eq!(key.prefix_len(), 104);
    }
}
