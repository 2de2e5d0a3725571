//! Guard rails on every entry that makes the XDP program drop a source: bans (from an operator
//! or from escalation) and `fastpath.deny` rules. A network written with host bits is refused
//! (as `ip route` does), one broader than the minimum prefix is refused (an operator may force a
//! ban past it, escalation never), and one that the allow list covers entirely is refused as
//! ineffective, since allowed sources pass before bans and deny rules are looked at.
//!
//! IPv4 sources live in the maps as IPv4-mapped IPv6 addresses, so an IPv6 network that
//! contains `::ffff:0:0/96` (such as `::/0`) covers every IPv4 source too: it is judged by both
//! minimums.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv6Net};
use serde::Deserialize;

/// The `[fastpath.guard]` table: how broad a ban or deny rule may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardRails {
    /// The shortest IPv4 prefix a ban or deny rule may have (default 8).
    pub min_prefix_v4: u8,
    /// The shortest IPv6 prefix a ban or deny rule may have (default 16).
    pub min_prefix_v6: u8,
}

impl Default for GuardRails {
    fn default() -> Self {
        GuardRails {
            min_prefix_v4: 8,
            min_prefix_v6: 16,
        }
    }
}

/// Why a network may not become a ban or a deny rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// The text names an address inside a network rather than the network.
    #[error("`{input}` has host bits set: write {network} for the network, or {address} for the one address")]
    HostBits {
        /// What was written.
        input: String,
        /// The network it lies in.
        network: IpNet,
        /// The single address it names.
        address: IpNet,
    },
    /// The network is broader than the configured minimum prefix.
    #[error("{target} covers {covers}, more than the broadest allowed (/{min} for {family}, fastpath.guard.min_prefix_{key}): a ban or deny rule that wide can cut the host off, SSH included")]
    TooBroad {
        /// The network.
        target: IpNet,
        /// What it covers, in words.
        covers: String,
        /// The minimum prefix it breaks.
        min: u8,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// `v4` or `v6`.
        key: &'static str,
    },
    /// The allow list covers the whole network, so it would drop nothing.
    #[error("{target} is inside the allow list entry {allow}: allowed sources pass before bans and deny rules are looked at, so it would drop nothing")]
    Allowlisted {
        /// The network.
        target: IpNet,
        /// The allow entry that covers it.
        allow: IpNet,
    },
}

/// The IPv4-mapped range: where IPv4 sources live in the maps.
fn v4_mapped_range() -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).expect("96 <= 128")
}

/// The network in IPv4 terms when it lies inside the IPv4-mapped range.
fn as_v4(net: &IpNet) -> Option<ipnet::Ipv4Net> {
    match net {
        IpNet::V4(v4) => Some(*v4),
        IpNet::V6(v6) if v6.prefix_len() >= 96 => {
            let v4 = v6.network().to_ipv4_mapped()?;
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).ok()
        }
        IpNet::V6(_) => None,
    }
}

/// Whether `outer` contains all of `inner`, with IPv4 and IPv4-mapped IPv6 treated as one.
pub fn covers(outer: &IpNet, inner: &IpNet) -> bool {
    match (outer, inner) {
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_)) => outer.contains(inner),
        (IpNet::V6(o), IpNet::V4(i)) => {
            let mapped = Ipv6Net::new(i.network().to_ipv6_mapped(), i.prefix_len() + 96)
                .expect("prefix + 96 <= 128");
            o.contains(&mapped)
        }
        (IpNet::V4(o), IpNet::V6(_)) => as_v4(inner).is_some_and(|i| o.contains(&i)),
    }
}

/// Parses `ADDR` or `ADDR/LEN`; a network with host bits set is refused, naming both readings.
/// `None` when the text is not an address or network at all.
pub fn parse_network(input: &str) -> Option<Result<IpNet, GuardError>> {
    let trimmed = input.trim();
    let Ok(net) = trimmed.parse::<IpNet>() else {
        return trimmed
            .parse::<IpAddr>()
            .ok()
            .map(|addr| Ok(IpNet::from(addr)));
    };
    Some(exact(net, input))
}

/// `net` itself when it has no host bits; `input` is what the operator wrote.
pub fn exact(net: IpNet, input: &str) -> Result<IpNet, GuardError> {
    if net.trunc() == net {
        Ok(net)
    } else {
        Err(GuardError::HostBits {
            input: input.trim().to_owned(),
            network: net.trunc(),
            address: IpNet::from(net.addr()),
        })
    }
}

impl GuardRails {
    /// Refuses a network broader than the minimum prefixes.
    pub fn check_breadth(&self, target: &IpNet) -> Result<(), GuardError> {
        let too_broad = |covers: String, min: u8, family, key| GuardError::TooBroad {
            target: *target,
            covers,
            min,
            family,
            key,
        };
        if let Some(v4) = as_v4(target) {
            if v4.prefix_len() < self.min_prefix_v4 {
                return Err(too_broad(
                    format!("{} IPv4 addresses", 1u64 << (32 - v4.prefix_len())),
                    self.min_prefix_v4,
                    "IPv4",
                    "v4",
                ));
            }
            return Ok(());
        }
        let IpNet::V6(v6) = target else {
            unreachable!("every IPv4 network has an IPv4 reading")
        };
        if v6.contains(&v4_mapped_range()) {
            return Err(too_broad(
                "every IPv4 address (IPv4 sources are matched as ::ffff:a.b.c.d)".to_owned(),
                self.min_prefix_v4,
                "IPv4",
                "v4",
            ));
        }
        if v6.prefix_len() < self.min_prefix_v6 {
            return Err(too_broad(
                format!("a /{} of the IPv6 space", v6.prefix_len()),
                self.min_prefix_v6,
                "IPv6",
                "v6",
            ));
        }
        Ok(())
    }

    /// Refuses a network the allow list covers entirely.
    pub fn check_allow(target: &IpNet, allow: &[IpNet]) -> Result<(), GuardError> {
        match allow.iter().find(|a| covers(a, target)) {
            Some(allow) => Err(GuardError::Allowlisted {
                target: *target,
                allow: *allow,
            }),
            None => Ok(()),
        }
    }

    /// Allow entries inside `target`: sources a ban or deny rule of `target` leaves alone.
    pub fn allowed_within(target: &IpNet, allow: &[IpNet]) -> Vec<IpNet> {
        allow
            .iter()
            .filter(|a| covers(target, a))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn host_bits_are_refused_naming_both_readings() {
        let error = parse_network("10.77.0.99/24").unwrap().unwrap_err();
        assert_eq!(
            error,
            GuardError::HostBits {
                input: "10.77.0.99/24".into(),
                network: net("10.77.0.0/24"),
                address: net("10.77.0.99/32"),
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("10.77.0.0/24") && text.contains("10.77.0.99/32"),
            "{text}"
        );
        assert_eq!(
            parse_network("10.77.0.0/24").unwrap(),
            Ok(net("10.77.0.0/24"))
        );
        assert_eq!(
            parse_network("10.77.0.99").unwrap(),
            Ok(net("10.77.0.99/32"))
        );
        assert!(parse_network("2001:db8::1/64").unwrap().is_err());
        assert!(parse_network("bad").is_none());
        assert!(parse_network("10.0.0.0/33").is_none());
    }

    #[test]
    fn broader_than_the_minimum_is_refused() {
        let rails = GuardRails::default();
        for refused in [
            "0.0.0.0/0",
            "10.0.0.0/7",
            "::/0",
            "::/16",
            "::ffff:0:0/96",
            "::ffff:10.0.0.0/100",
            "2001::/15",
        ] {
            assert!(
                rails.check_breadth(&net(refused)).is_err(),
                "{refused} passed"
            );
        }
        for allowed in [
            "10.0.0.0/8",
            "203.0.113.7/32",
            "::ffff:10.0.0.0/104",
            "2001::/16",
            "2001:db8::/48",
        ] {
            assert_eq!(rails.check_breadth(&net(allowed)), Ok(()), "{allowed}");
        }
        let text = rails.check_breadth(&net("::/0")).unwrap_err().to_string();
        assert!(text.contains("every IPv4 address"), "{text}");
        let loose = GuardRails {
            min_prefix_v4: 0,
            min_prefix_v6: 0,
        };
        assert_eq!(loose.check_breadth(&net("0.0.0.0/0")), Ok(()));
    }

    #[test]
    fn allow_covers_across_the_mapped_range() {
        let allow = [net("10.0.0.0/8"), net("::1/128")];
        assert!(GuardRails::check_allow(&net("10.1.2.3/32"), &allow).is_err());
        assert!(GuardRails::check_allow(&net("::ffff:10.1.2.3/128"), &allow).is_err());
        assert!(GuardRails::check_allow(&net("::1/128"), &allow).is_err());
        assert_eq!(GuardRails::check_allow(&net("11.0.0.0/8"), &allow), Ok(()));
        assert_eq!(
            GuardRails::allowed_within(&net("::/1"), &allow),
            vec![net("10.0.0.0/8"), net("::1/128")]
        );
        assert!(GuardRails::allowed_within(&net("10.0.0.0/16"), &allow).is_empty());
        assert!(covers(&net("10.0.0.0/8"), &net("::ffff:10.9.0.0/112")));
    }
}
