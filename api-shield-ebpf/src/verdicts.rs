//! The per-CPU verdict cache: once the limiter finds a source over budget, every packet of it
//! before the next conforming instant is dropped without the map lookups; once a deny entry
//! matches a source, every packet of it is dropped without them for one drop-event interval.
//! Entries are keyed by the exact source address (the instant is its limiter key's, e.g. its
//! IPv6 prefix's). The cached instant is exact (a GCRA state only moves forward, so a source
//! never conforms sooner than computed), and a change of the allow, deny or ban lists bumps
//! `RULES_GEN`, which voids every entry. A deny verdict is only made for a source the allow
//! list does not hold, and the deny lookup comes before bans and the limiter, so caching it
//! changes no verdict.

use api_shield_common::{maps::VERDICT_BITS, values::NOT_DENIED, VerdictSlot};

use crate::maps::{RULES_GEN, VERDICTS};

/// The current rules generation.
#[inline(always)]
pub fn generation() -> u64 {
    RULES_GEN.get(0).copied().unwrap_or(0)
}

#[inline(always)]
fn slot(key: &[u64; 2]) -> Option<*mut VerdictSlot> {
    // Fibonacci hashing of the folded key: the top bits index the table.
    let folded = key[0] ^ key[1];
    let index = (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - VERDICT_BITS)) as u32;
    VERDICTS.get_ptr_mut(index)
}

/// What the cache knows of a source.
pub enum Cached {
    /// Nothing (or nothing in force).
    Nothing,
    /// Over budget: drop what starts work.
    OverBudget,
    /// Denied by the list in this slot: drop everything.
    Denied(u32),
}

/// What the cache holds for `key` at `now` under rules `generation`.
#[inline(always)]
pub fn lookup(key: &[u64; 2], generation: u64, now: u64) -> Cached {
    let Some(slot) = slot(key) else {
        return Cached::Nothing;
    };
    // SAFETY: per-CPU slot from a successful lookup; only this CPU reads and writes it.
    let slot = unsafe { &*slot };
    if slot.key[0] != key[0]
        || slot.key[1] != key[1]
        || slot.generation != generation
        || now >= slot.until_ns
    {
        return Cached::Nothing;
    }
    if slot.denied == NOT_DENIED {
        Cached::OverBudget
    } else {
        Cached::Denied(slot.denied)
    }
}

/// Records that `key` cannot conform before `until_ns`.
#[inline(always)]
pub fn remember(key: &[u64; 2], generation: u64, until_ns: u64) {
    store(key, generation, until_ns, NOT_DENIED);
}

/// Records that `key` is denied by list `list` until `until_ns`.
#[inline(always)]
pub fn remember_denied(key: &[u64; 2], generation: u64, until_ns: u64, list: u32) {
    store(key, generation, until_ns, list);
}

#[inline(always)]
fn store(key: &[u64; 2], generation: u64, until_ns: u64, denied: u32) {
    if let Some(slot) = slot(key) {
        // SAFETY: as above.
        unsafe {
            *slot = VerdictSlot {
                key: *key,
                until_ns,
                generation,
                denied,
                _pad: 0,
            };
        }
    }
}
