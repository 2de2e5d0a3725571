//! The kernel's deny table and who put each entry there. Several lists feed it: the config's
//! `fastpath.deny` (slot 0) and the blocklists (slots 1 to 63, named in `LIST_NAMES`). One
//! network may be in several lists; the kernel holds it once, counted against the lowest slot
//! that holds it, and it leaves the kernel when the last list holding it lets it go.
//!
//! A list is replaced as a diff ([`DenyTable::replace`]): entries it keeps are not touched,
//! new ones are inserted first and dropped ones deleted last, and each kernel write is atomic.
//! So a source listed before and after an update is dropped throughout it: there is no moment
//! when the list is half applied or empty, however large it is.
//!
//! Who holds what is kept in userspace (a bit per slot for each network), seeded at start from
//! the kernel entries' slots, so a restarted daemon carries the lists it had until each is
//! loaded again.
//!
//! Single addresses (IPv4 /32, IPv6 /128) go to `DENY_EXACT`, a hash the program looks up
//! first (one lookup however many there are); networks go to the `DENY` trie, whose lookup
//! walks nodes from the root.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use api_shield_common::{
    maps::{self, CONFIG_DENY_LIST, MAX_LISTS},
    Addr, Counter, ListName, RuleValue,
};
use aya::maps::{
    lpm_trie::Key, Array, HashMap as KernelHash, IterableMap, LpmTrie, Map, MapData, PerCpuArray,
};
use ipnet::IpNet;

use super::{
    addr::target_key,
    maps::{typed as open, typed_from},
    FastpathError, PinnedMaps,
};

/// One network as the deny trie keys it: the 16 mapped address bytes and the prefix length in
/// the mapped space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleKey {
    /// Network address (IPv4 mapped).
    pub addr: Addr,
    /// Prefix length in the 128-bit mapped space.
    pub prefix: u8,
}

impl RuleKey {
    /// The key of a network (host bits are cleared).
    pub fn of(net: &IpNet) -> RuleKey {
        let key = target_key(&net.trunc());
        RuleKey {
            addr: key.data(),
            prefix: key.prefix_len() as u8,
        }
    }

    fn trie_key(&self) -> Key<Addr> {
        Key::new(u32::from(self.prefix), self.addr)
    }

    /// Whether it is one address (kept in `DENY_EXACT`).
    fn is_exact(&self) -> bool {
        self.prefix == 128
    }
}

/// The name of the config's own deny list in `LIST_NAMES`, the stats and the metrics.
pub const CONFIG_DENY_NAME: &str = "deny";

/// What replacing one list's entries did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Entries the list holds now (the ones the table had room for).
    pub held: usize,
    /// Networks new to the kernel table.
    pub inserted: usize,
    /// Networks the kernel table no longer holds.
    pub deleted: usize,
    /// Entries of the list left out because the table was full (`fastpath.max_deny`).
    pub no_room: usize,
}

/// The deny table, its list slots and the per-list counters.
pub struct DenyTable {
    trie: LpmTrie<MapData, Addr, RuleValue>,
    exact: KernelHash<MapData, Addr, RuleValue>,
    names: Array<MapData, ListName>,
    counters: PerCpuArray<MapData, Counter>,
    rules_gen: Array<MapData, u64>,
    /// Slots holding each network, a bit per slot.
    holders: HashMap<RuleKey, u64>,
    /// Entries the kernel table takes (`fastpath.max_deny`).
    capacity: usize,
}

/// A second handle on the map `data` is (by its id: it may no longer be pinned).
fn reopen<T>(data: &MapData, name: &'static str) -> Result<T, FastpathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let id = data.info().map_err(FastpathError::map(name))?.id();
    typed_from(MapData::from_id(id), name)
}

fn encode_name(name: &str) -> ListName {
    let mut out = [0u8; api_shield_common::values::LIST_NAME_LEN];
    let bytes = name.as_bytes();
    let len = bytes.len().min(out.len());
    out[..len].copy_from_slice(&bytes[..len]);
    out
}

/// A slot's name as written (empty for a free slot).
pub fn decode_name(raw: &ListName) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// The list slots' names, read where a drop event names a slot.
pub struct ListNames(Array<MapData, ListName>);

impl ListNames {
    /// Opens the pinned `LIST_NAMES` of `layout_dir`.
    pub fn open(layout_dir: &Path) -> Result<ListNames, FastpathError> {
        Ok(ListNames(open(layout_dir, maps::LIST_NAMES)?))
    }

    /// The name of `slot`, when it has one.
    pub fn name(&self, slot: u32) -> Option<String> {
        let name = decode_name(&self.0.get(&slot, 0).ok()?);
        (!name.is_empty()).then_some(name)
    }
}

impl DenyTable {
    /// Opens the pinned deny table of `layout_dir` and reads who holds what from it; the config
    /// list's slot is named.
    pub fn open(layout_dir: &Path, capacity: u32) -> Result<DenyTable, FastpathError> {
        DenyTable::with(
            open(layout_dir, maps::DENY)?,
            open(layout_dir, maps::DENY_EXACT)?,
            open(layout_dir, maps::LIST_NAMES)?,
            open(layout_dir, maps::LIST_STATS)?,
            open(layout_dir, maps::RULES_GEN)?,
            capacity,
        )
    }

    /// The same over the maps `maps` has open (also when they are no longer pinned).
    pub fn from_maps(maps: &PinnedMaps, capacity: u32) -> Result<DenyTable, FastpathError> {
        DenyTable::with(
            reopen(maps.deny.map(), maps::DENY)?,
            reopen(maps.deny_exact.map(), maps::DENY_EXACT)?,
            reopen(maps.list_names.map(), maps::LIST_NAMES)?,
            reopen(maps.list_stats.map(), maps::LIST_STATS)?,
            reopen(maps.rules_gen.map(), maps::RULES_GEN)?,
            capacity,
        )
    }

    fn with(
        trie: LpmTrie<MapData, Addr, RuleValue>,
        exact: KernelHash<MapData, Addr, RuleValue>,
        names: Array<MapData, ListName>,
        counters: PerCpuArray<MapData, Counter>,
        rules_gen: Array<MapData, u64>,
        capacity: u32,
    ) -> Result<DenyTable, FastpathError> {
        // Every list holding the entry (values written before `holders` existed name their
        // counting list only).
        let slot_bit = |value: &RuleValue| {
            if value.holders != 0 {
                value.holders
            } else if value.list < MAX_LISTS {
                1u64 << value.list
            } else {
                1u64 << CONFIG_DENY_LIST
            }
        };
        let mut holders = HashMap::new();
        for entry in &trie {
            let (key, value) = entry.map_err(FastpathError::map(maps::DENY))?;
            let key = RuleKey {
                addr: key.data(),
                prefix: key.prefix_len() as u8,
            };
            holders.insert(key, slot_bit(&value));
        }
        for entry in &exact {
            let (addr, value) = entry.map_err(FastpathError::map(maps::DENY_EXACT))?;
            holders.insert(RuleKey { addr, prefix: 128 }, slot_bit(&value));
        }
        // The maps keep the size they were created with (a changed max_deny waits for them to
        // be made again), so the smaller of the two is what fits.
        let created = trie
            .map()
            .info()
            .map_err(FastpathError::map(maps::DENY))?
            .max_entries();
        let capacity = capacity.min(created);
        let mut table = DenyTable {
            trie,
            exact,
            names,
            counters,
            rules_gen,
            holders,
            capacity: capacity as usize,
        };
        table.write_name(CONFIG_DENY_LIST, CONFIG_DENY_NAME)?;
        Ok(table)
    }

    /// The names of the used blocklist slots (slot 0, the config's list, left out).
    pub fn lists(&self) -> Result<Vec<(u32, String)>, FastpathError> {
        let mut lists = Vec::new();
        for slot in 1..MAX_LISTS {
            let name = decode_name(
                &self
                    .names
                    .get(&slot, 0)
                    .map_err(FastpathError::map(maps::LIST_NAMES))?,
            );
            if !name.is_empty() {
                lists.push((slot, name));
            }
        }
        Ok(lists)
    }

    /// The slot of the blocklist `name`: the one it had (also in an earlier run), or a free
    /// one, its counters zeroed. `None` when all 63 are taken.
    pub fn slot_for(&mut self, name: &str) -> Result<Option<u32>, FastpathError> {
        let lists = self.lists()?;
        if let Some((slot, _)) = lists.iter().find(|(_, n)| n == name) {
            return Ok(Some(*slot));
        }
        let Some(free) = (1..MAX_LISTS).find(|s| lists.iter().all(|(used, _)| used != s)) else {
            return Ok(None);
        };
        let as_map_error = |call: &'static str, io_error: std::io::Error| FastpathError::Map {
            map: maps::LIST_STATS,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError { call, io_error }),
        };
        let cpus = aya::util::nr_cpus().map_err(|(_, error)| as_map_error("nr_cpus", error))?;
        let zeros = aya::maps::PerCpuValues::try_from(vec![Counter::default(); cpus])
            .map_err(|error| as_map_error("per-cpu values", error))?;
        self.counters
            .set(free, zeros, 0)
            .map_err(FastpathError::map(maps::LIST_STATS))?;
        self.write_name(free, name)?;
        Ok(Some(free))
    }

    fn write_name(&mut self, slot: u32, name: &str) -> Result<(), FastpathError> {
        self.names
            .set(slot, encode_name(name), 0)
            .map_err(FastpathError::map(maps::LIST_NAMES))
    }

    /// Networks in the kernel table.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    /// Whether the kernel table is empty.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    /// Makes `slot` hold exactly `wanted` (as far as the table has room): inserts and changes
    /// of who holds an entry first, deletions next, then the new entries that only fit once the
    /// deletions made room; entries kept are untouched. The program's cached verdicts are
    /// voided whenever anything was written, also when a write failed part way.
    pub fn replace(
        &mut self,
        slot: u32,
        wanted: &HashSet<RuleKey>,
    ) -> Result<Replaced, FastpathError> {
        assert!(slot < MAX_LISTS, "list slots are below MAX_LISTS");
        let mut done = Replaced::default();
        let mut written = false;
        let result = self.apply(slot, wanted, &mut done, &mut written);
        if written {
            self.bump_generation()?;
        }
        result.map(|()| done)
    }

    fn apply(
        &mut self,
        slot: u32,
        wanted: &HashSet<RuleKey>,
        done: &mut Replaced,
        written: &mut bool,
    ) -> Result<(), FastpathError> {
        let bit = 1u64 << slot;
        let mut later = Vec::new();
        for key in wanted {
            let before = self.holders.get(key).copied().unwrap_or(0);
            if before & bit != 0 {
                done.held += 1;
                continue;
            }
            if before == 0 && self.holders.len() >= self.capacity {
                later.push(*key);
                continue;
            }
            self.hold(key, before | bit, written)?;
            if before == 0 {
                done.inserted += 1;
            }
            done.held += 1;
        }
        let leaving: Vec<RuleKey> = self
            .holders
            .iter()
            .filter(|(key, holders)| *holders & bit != 0 && !wanted.contains(key))
            .map(|(key, _)| *key)
            .collect();
        for key in leaving {
            let after = self.holders[&key] & !bit;
            if after != 0 {
                self.hold(&key, after, written)?;
                continue;
            }
            *written = true;
            let removed = if key.is_exact() {
                self.exact.remove(&key.addr)
            } else {
                self.trie.remove(&key.trie_key())
            };
            match removed {
                // Already gone (removed by hand) is as wanted.
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(error) => return Err(FastpathError::map(maps::DENY)(error)),
            }
            self.holders.remove(&key);
            done.deleted += 1;
        }
        // New entries are no part of what was dropped before, so writing them last opens no gap.
        for key in later {
            if self.holders.len() >= self.capacity {
                done.no_room += 1;
                continue;
            }
            self.hold(&key, bit, written)?;
            done.inserted += 1;
            done.held += 1;
        }
        Ok(())
    }

    /// Writes `key` as held by `holders` (the kernel value names them all, and counts against
    /// the lowest).
    fn hold(
        &mut self,
        key: &RuleKey,
        holders: u64,
        written: &mut bool,
    ) -> Result<(), FastpathError> {
        *written = true;
        self.write(key, holders)?;
        self.holders.insert(*key, holders);
        Ok(())
    }

    /// Frees the slots of blocklists not in `configured`, with their entries (lists an earlier
    /// run had); the names of the slots freed.
    pub fn release_unlisted(&mut self, configured: &[&str]) -> Result<Vec<String>, FastpathError> {
        let mut released = Vec::new();
        for (slot, name) in self.lists()? {
            if !configured.contains(&name.as_str()) {
                self.release(slot)?;
                released.push(name);
            }
        }
        Ok(released)
    }

    /// Lets go of every entry of `slot` and frees it (a blocklist no longer configured).
    pub fn release(&mut self, slot: u32) -> Result<Replaced, FastpathError> {
        let done = self.replace(slot, &HashSet::new())?;
        if slot != CONFIG_DENY_LIST {
            self.write_name(slot, "")?;
        }
        Ok(done)
    }

    fn write(&mut self, key: &RuleKey, holders: u64) -> Result<(), FastpathError> {
        let value = RuleValue::held_by(holders);
        let written = if key.is_exact() {
            self.exact.insert(key.addr, value, 0)
        } else {
            self.trie.insert(&key.trie_key(), value, 0)
        };
        written.map_err(|error| match error {
            aya::maps::MapError::SyscallError(ref e)
                if matches!(e.io_error.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG)) =>
            {
                FastpathError::DenyFull {
                    max: self.capacity as u32,
                }
            }
            other => FastpathError::map(maps::DENY)(other),
        })
    }

    fn bump_generation(&mut self) -> Result<(), FastpathError> {
        super::maps::bump_generation(&mut self.rules_gen)
    }
}
