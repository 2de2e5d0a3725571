//! Keeps the allow trie (and, where no blocklists share it, the deny trie) equal to the config,
//! touching only what changed (entries that stay keep their state).

use std::collections::HashSet;

use api_shield_common::{Addr, RuleValue};
use aya::maps::{lpm_trie::Key, LpmTrie, MapData};
use ipnet::IpNet;

use super::{addr::target_key, FastpathError};

/// Makes `trie` hold exactly `wanted`; returns (added, removed).
pub(super) fn sync(
    trie: &mut LpmTrie<MapData, Addr, RuleValue>,
    name: &'static str,
    wanted: &[IpNet],
) -> Result<(usize, usize), FastpathError> {
    let wanted: HashSet<(u32, Addr)> = wanted
        .iter()
        .map(|net| {
            let key = target_key(&net.trunc());
            (key.prefix_len(), key.data())
        })
        .collect();
    let present: HashSet<(u32, Addr)> = trie
        .keys()
        .map(|key| key.map(|key| (key.prefix_len(), key.data())))
        .collect::<Result<_, _>>()
        .map_err(FastpathError::map(name))?;
    let mut removed = 0;
    for (prefix, data) in present.difference(&wanted) {
        trie.remove(&Key::new(*prefix, *data))
            .map_err(FastpathError::map(name))?;
        removed += 1;
    }
    let mut added = 0;
    for (prefix, data) in wanted.difference(&present) {
        trie.insert(&Key::new(*prefix, *data), RuleValue::default(), 0)
            .map_err(FastpathError::map(name))?;
        added += 1;
    }
    Ok((added, removed))
}
