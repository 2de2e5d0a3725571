//! Starting over maps of an older layout (a daemon upgraded in place): what an operator would
//! lose or trip over otherwise is carried over before the program attaches.
//!
//! - **Bans** of the previous layouts (versions 2 to 5, whose ban entries the current layout
//!   keeps as they are) are copied into the new `BANS` map, so an upgrade lifts no ban.
//! - **Pinned links** (left by `keep_attached = true`) are moved into the new links directory,
//!   so the new program is swapped into them atomically: the interface is never unfiltered,
//!   and not refused as "held by another XDP program".
//!
//! Then the older layout directory is removed (its maps are freed with their last user). Maps
//! of a layout older than those cannot be read by this build: they are left in place, with a
//! warning naming the directory.

use std::path::Path;

use api_shield_common::{maps, Addr, BanValue, LAYOUT_VERSION};
use aya::maps::{lpm_trie::Key, LpmTrie, Map, MapData};

use super::{FastpathError, PinnedMaps};

/// The older layouts whose bans this build can read (the ban value is the same since 2).
const READABLE_LAYOUTS: std::ops::RangeInclusive<u32> = 2..=5;

/// What was carried over from older layouts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CarriedOver {
    /// Bans copied into the new map.
    pub bans: usize,
    /// Pinned links moved into the new links directory.
    pub links: usize,
}

/// Carries bans and pinned links over from the layouts older than this build's under
/// `pin_dir` into `maps` and `links_dir`, for `interfaces`.
pub(super) fn carry_over(
    pin_dir: &Path,
    maps: &mut PinnedMaps,
    links_dir: &Path,
    interfaces: &[String],
) -> Result<CarriedOver, FastpathError> {
    let mut carried = CarriedOver::default();
    for version in 1..LAYOUT_VERSION {
        let old = pin_dir.join(format!("v{version}"));
        if !old.is_dir() {
            continue;
        }
        if !READABLE_LAYOUTS.contains(&version) {
            tracing::warn!(
                dir = %old.display(),
                "maps of an older layout that this build cannot read are left in place; remove the \
                 directory once nothing uses them"
            );
            continue;
        }
        carried.bans += copy_bans(&old, maps)?;
        carried.links += move_links(&old.join("links"), links_dir, interfaces)?;
        std::fs::remove_dir_all(&old).map_err(|source| FastpathError::Pin { path: old, source })?;
    }
    if carried.bans > 0 {
        maps.bump_rules_generation()?;
    }
    Ok(carried)
}

/// Copies the bans pinned in `old` that `maps` does not hold yet.
fn copy_bans(old: &Path, maps: &mut PinnedMaps) -> Result<usize, FastpathError> {
    let path = old.join(maps::BANS);
    if !path.exists() {
        return Ok(0);
    }
    let data = MapData::from_pin(&path).map_err(FastpathError::map(maps::BANS))?;
    let map = Map::from_map_data(data).map_err(FastpathError::map(maps::BANS))?;
    let previous: LpmTrie<MapData, Addr, BanValue> =
        LpmTrie::try_from(map).map_err(FastpathError::map(maps::BANS))?;
    let mut copied = 0;
    for entry in &previous {
        let (key, value) = entry.map_err(FastpathError::map(maps::BANS))?;
        let key = Key::new(key.prefix_len(), key.data());
        if maps.bans.get(&key, 0).is_ok() {
            continue;
        }
        maps.bans
            .insert(&key, value, 0)
            .map_err(FastpathError::map(maps::BANS))?;
        copied += 1;
    }
    Ok(copied)
}

/// Moves the pinned links of `interfaces` from `old_links` into `links_dir`.
fn move_links(
    old_links: &Path,
    links_dir: &Path,
    interfaces: &[String],
) -> Result<usize, FastpathError> {
    let mut moved = 0;
    for interface in interfaces {
        let old = old_links.join(interface);
        if !old.exists() {
            continue;
        }
        std::fs::create_dir_all(links_dir).map_err(|source| FastpathError::Pin {
            path: links_dir.to_path_buf(),
            source,
        })?;
        let new = links_dir.join(interface);
        std::fs::rename(&old, &new).map_err(|source| FastpathError::Pin { path: old, source })?;
        moved += 1;
    }
    Ok(moved)
}
