//! Random IPv4 networks for the deny-table benchmarks: distinct, spread over
//! 1.0.0.0–223.255.255.255, reproducible from a seed, never inside a range the caller keeps
//! free (the flood's or the probes' sources).

use std::{collections::HashSet, net::Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

/// `count` distinct random networks of prefix `len`, none overlapping `keep_free`.
pub fn random_networks(count: usize, len: u8, seed: u64, keep_free: Ipv4Net) -> Vec<IpNet> {
    let mut state = seed | 1;
    let mut distinct = HashSet::with_capacity(count);
    let mut nets = Vec::with_capacity(count);
    while nets.len() < count {
        // xorshift64*.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
        let first = (word >> 24) as u8;
        let Ok(net) = Ipv4Net::new(Ipv4Addr::from(word), len) else {
            continue;
        };
        let net = net.trunc();
        if !(1..=223).contains(&first) || net.contains(&keep_free) || keep_free.contains(&net) {
            continue;
        }
        if distinct.insert(net) {
            nets.push(IpNet::V4(net));
        }
    }
    nets
}
