//! Typed handles on the pinned maps, opened by path so the daemon and the CLI (with or without
//! the daemon running) see the same state.

use std::path::{Path, PathBuf};

use api_shield_common::{
    maps, Addr, BanValue, Counter, LimiterState, ListName, RuleValue, ShieldConfig,
};
use aya::maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray};

use super::FastpathError;

/// The program's pinned maps.
pub struct PinnedMaps {
    /// The layout directory they were opened from.
    pub dir: PathBuf,
    /// Settings.
    pub config: Array<MapData, ShieldConfig>,
    /// Protected port bitmaps.
    pub ports: Array<MapData, u64>,
    /// Allow list.
    pub allow: LpmTrie<MapData, Addr, RuleValue>,
    /// Deny list: networks.
    pub deny: LpmTrie<MapData, Addr, RuleValue>,
    /// Deny list: single addresses.
    pub deny_exact: HashMap<MapData, Addr, RuleValue>,
    /// Bans.
    pub bans: LpmTrie<MapData, Addr, BanValue>,
    /// Limiter state per source.
    pub limiter: HashMap<MapData, Addr, LimiterState>,
    /// Counters per reason and CPU.
    pub stats: PerCpuArray<MapData, Counter>,
    /// Generation of the rules, read by the program's verdict cache.
    pub rules_gen: Array<MapData, u64>,
    /// Deny-list drops per list slot and CPU.
    pub list_stats: PerCpuArray<MapData, Counter>,
    /// The name of each list slot.
    pub list_names: Array<MapData, ListName>,
}

impl PinnedMaps {
    /// Opens the maps pinned in `layout_dir` (see [`super::layout_dir`]).
    pub fn open(layout_dir: &Path) -> Result<PinnedMaps, FastpathError> {
        match layout_dir.join(maps::STATS).try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(FastpathError::NotPinned {
                    dir: layout_dir.to_path_buf(),
                })
            }
            Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(FastpathError::PinsNotReadable {
                    dir: layout_dir.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(FastpathError::Pin {
                    path: layout_dir.to_path_buf(),
                    source,
                })
            }
        }
        Ok(PinnedMaps {
            dir: layout_dir.to_path_buf(),
            config: typed(layout_dir, maps::CONFIG)?,
            ports: typed(layout_dir, maps::PORTS)?,
            allow: typed(layout_dir, maps::ALLOW)?,
            deny: typed(layout_dir, maps::DENY)?,
            deny_exact: typed(layout_dir, maps::DENY_EXACT)?,
            bans: typed(layout_dir, maps::BANS)?,
            limiter: typed(layout_dir, maps::LIMITER)?,
            stats: typed(layout_dir, maps::STATS)?,
            rules_gen: typed(layout_dir, maps::RULES_GEN)?,
            list_stats: typed(layout_dir, maps::LIST_STATS)?,
            list_names: typed(layout_dir, maps::LIST_NAMES)?,
        })
    }

    /// Every deny entry, networks and single addresses, as (prefix length in the mapped space,
    /// address bytes).
    pub fn deny_keys(&self) -> Result<Vec<(u32, Addr)>, FastpathError> {
        let mut keys = Vec::new();
        for key in self.deny.keys() {
            let key = key.map_err(FastpathError::map(maps::DENY))?;
            keys.push((key.prefix_len(), key.data()));
        }
        for addr in self.deny_exact.keys() {
            keys.push((128, addr.map_err(FastpathError::map(maps::DENY_EXACT))?));
        }
        Ok(keys)
    }

    /// Voids the program's cached verdicts: called after any change of allow, deny or bans.
    pub fn bump_rules_generation(&mut self) -> Result<(), FastpathError> {
        bump_generation(&mut self.rules_gen)
    }
}

/// Adds one to `RULES_GEN`. Writers in this process (the maps' and the deny table's, under
/// locks of their own) take turns, so a stale write never puts back a value that cached
/// verdicts carry; another process (the CLI without a daemon) may race once, which still
/// changes the value.
pub(super) fn bump_generation(rules_gen: &mut Array<MapData, u64>) -> Result<(), FastpathError> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let current = rules_gen
        .get(&0, 0)
        .map_err(FastpathError::map(maps::RULES_GEN))?;
    rules_gen
        .set(0, current.wrapping_add(1), 0)
        .map_err(FastpathError::map(maps::RULES_GEN))
}

/// The map pinned as `name` in `dir`, typed.
pub(super) fn typed<T>(dir: &Path, name: &'static str) -> Result<T, FastpathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    typed_from(MapData::from_pin(dir.join(name)), name)
}

/// The map `data` opened (by pin or by id), typed.
pub(super) fn typed_from<T>(
    data: Result<MapData, aya::maps::MapError>,
    name: &'static str,
) -> Result<T, FastpathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = Map::from_map_data(data.map_err(FastpathError::map(name))?)
        .map_err(FastpathError::map(name))?;
    T::try_from(map).map_err(FastpathError::map(name))
}
