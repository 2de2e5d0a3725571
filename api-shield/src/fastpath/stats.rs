//! Reads the per-CPU counters and sums them per reason.

use api_shield_common::Reason;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::{FastpathError, PinnedMaps};

/// One counter, summed over CPUs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CounterRow {
    /// `pass`, `drop` or `dry_run`.
    pub action: Cow<'static, str>,
    /// The cause (`banned`, `rate_limited`, ...).
    pub reason: Cow<'static, str>,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Packets the deny entries of one list dropped (or, in a dry run, would have), summed over
/// CPUs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListCounterRow {
    /// The list: `deny` for `fastpath.deny`, else a blocklist's name.
    pub list: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// All counters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// One row per reason, in index order.
    pub counters: Vec<CounterRow>,
}

impl Stats {
    /// Packets counted for a reason.
    pub fn packets(&self, reason: Reason) -> u64 {
        self.counters[reason as usize].packets
    }
}

impl PinnedMaps {
    /// Sums every counter over all CPUs.
    pub fn stats(&self) -> Result<Stats, FastpathError> {
        let mut counters = Vec::with_capacity(Reason::ALL.len());
        for reason in Reason::ALL {
            let per_cpu = self
                .stats
                .get(&(reason as u32), 0)
                .map_err(FastpathError::map(api_shield_common::maps::STATS))?;
            let (packets, bytes) = summed(&per_cpu);
            counters.push(CounterRow {
                action: Cow::Borrowed(reason.action()),
                reason: Cow::Borrowed(reason.cause()),
                packets,
                bytes,
            });
        }
        Ok(Stats { counters })
    }

    /// The drops of every named list slot, in slot order (`deny` first).
    pub fn list_stats(&self) -> Result<Vec<ListCounterRow>, FastpathError> {
        use api_shield_common::maps::{LIST_NAMES, LIST_STATS, MAX_LISTS};
        let mut rows = Vec::new();
        for slot in 0..MAX_LISTS {
            let name = self
                .list_names
                .get(&slot, 0)
                .map_err(FastpathError::map(LIST_NAMES))?;
            let list = super::deny_table::decode_name(&name);
            if list.is_empty() {
                continue;
            }
            let per_cpu = self
                .list_stats
                .get(&slot, 0)
                .map_err(FastpathError::map(LIST_STATS))?;
            let (packets, bytes) = summed(&per_cpu);
            rows.push(ListCounterRow {
                list,
                packets,
                bytes,
            });
        }
        Ok(rows)
    }
}

/// Packets and bytes of one counter, summed over CPUs.
fn summed(per_cpu: &aya::maps::PerCpuValues<api_shield_common::Counter>) -> (u64, u64) {
    per_cpu
        .iter()
        .fold((0u64, 0u64), |(p, b), c| (p + c.packets, b + c.bytes))
}
