//! The per-CPU verdict cache: once the limiter finds a source over budget, every packet of it
//! before the next conforming instant is dropped without the map lookups. Entries are keyed by
//! the exact source address (the instant is its limiter key's, e.g. its IPv6 prefix's). The
//! cached instant is exact (a GCRA state only moves forward, so a source never conforms sooner
//! than computed), and a change of the allow, deny or ban lists bumps `RULES_GEN`, which voids
//! every entry.

use api_shield_common::{maps::VERDICT_BITS, VerdictSlot};

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

/// Whether `key` is known to be over budget at `now` under rules `generation`.
#[inline(always)]
pub fn over_budget(key: &[u64; 2], generation: u64, now: u64) -> bool {
    let Some(slot) = slot(key) else {
        return false;
    };
    // SAFETY: per-CPU slot from a successful lookup; only this CPU reads and writes it.
    let slot = unsafe { &*slot };
    slot.key[0] == key[0]
        && slot.key[1] == key[1]
        && slot.generation == generation
        && now < slot.until_ns
}

/// Records that `key` cannot conform before `until_ns`.
#[inline(always)]
pub fn remember(key: &[u64; 2], generation: u64, until_ns: u64) {
    if let Some(slot) = slot(key) {
        // SAFETY: as above.
        unsafe {
            *slot = VerdictSlot {
                key: *key,
                until_ns,
                generation,
            };
        }
    }
}
