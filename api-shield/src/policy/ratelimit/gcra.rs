//! GCRA (the generic cell rate algorithm, as in governor) per client key, in a table of bounded
//! size.
//!
//! governor's keyed limiter grows without bound and its `retain_recent` evicts by age, so a flood
//! of fresh keys can push out a limited client, which then comes back with a full bucket. Here a
//! key is only ever forgotten once its theoretical arrival time (TAT) has passed: such an entry
//! is indistinguishable from a fresh one, so dropping it changes no decision. When the table is
//! full of live entries, keys not in it share one overflow budget at the same rate, so a flood
//! of distinct keys is limited as a whole instead of each key getting a bucket.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
    sync::Mutex,
};

/// Shards of the table, to keep lock holds short and spread across workers.
const SHARDS: usize = 16;

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allowed {
        /// Requests still allowed right now.
        remaining: u32,
        /// Nanoseconds until the whole burst is available again.
        reset_ns: u64,
    },
    /// Over the limit.
    Limited {
        /// Nanoseconds until one request would be allowed.
        retry_after_ns: u64,
    },
}

#[derive(Debug, Default)]
struct Shard {
    /// Key hash to TAT (monotonic ns).
    tats: HashMap<u64, u64>,
    /// No entry's TAT is earlier than this: sweeping before it would free nothing.
    sweep_after_ns: u64,
}

/// GCRA state per key, at most `max_keys` keys.
#[derive(Debug)]
pub struct KeyedGcra {
    interval_ns: u64,
    tolerance_ns: u64,
    per_shard: usize,
    shards: Vec<Mutex<Shard>>,
    overflow: Mutex<u64>,
    hasher: RandomState,
}

impl KeyedGcra {
    /// One request per `interval_ns`, `burst` at once, for at most `max_keys` keys.
    pub fn new(interval_ns: u64, burst: u32, max_keys: usize) -> KeyedGcra {
        KeyedGcra {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            overflow: Mutex::new(0),
            hasher: RandomState::new(),
        }
    }

    /// Counts one request from `key` at `now_ns` (monotonic) and decides.
    pub fn check(&self, key: &impl Hash, now_ns: u64) -> Decision {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .expect("a rate-limit shard lock is never poisoned");
        if let Some(tat) = shard.tats.get_mut(&hash) {
            return self.decide(tat, now_ns);
        }
        if shard.tats.len() >= self.per_shard {
            sweep(&mut shard, now_ns);
        }
        if shard.tats.len() < self.per_shard {
            let mut tat = now_ns;
            let decision = self.decide(&mut tat, now_ns);
            shard.sweep_after_ns = shard.sweep_after_ns.min(tat);
            shard.tats.insert(hash, tat);
            return decision;
        }
        drop(shard);
        let mut overflow_tat = self
            .overflow
            .lock()
            .expect("the overflow lock is never poisoned");
        self.decide(&mut overflow_tat, now_ns)
    }

    /// Raises `key`'s TAT to at least `floor_ns`: what the rest of a fleet spent of a shared
    /// budget (`fleet_share`). A key not tracked is tracked if there is room, else the shared
    /// overflow budget is raised.
    pub fn raise(&self, key: &impl Hash, floor_ns: u64) {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shards[(hash as usize) % SHARDS]
            .lock()
            .expect("a rate-limit shard lock is never poisoned");
        if let Some(tat) = shard.tats.get_mut(&hash) {
            *tat = (*tat).max(floor_ns);
            return;
        }
        if shard.tats.len() < self.per_shard {
            shard.sweep_after_ns = shard.sweep_after_ns.min(floor_ns);
            shard.tats.insert(hash, floor_ns);
            return;
        }
        drop(shard);
        let mut overflow = self
            .overflow
            .lock()
            .expect("the overflow lock is never poisoned");
        *overflow = (*overflow).max(floor_ns);
    }

    /// Keys tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("never poisoned").tats.len())
            .sum()
    }

    fn decide(&self, tat: &mut u64, now_ns: u64) -> Decision {
        let next = (*tat).max(now_ns).saturating_add(self.interval_ns);
        let ahead = next - now_ns;
        if ahead > self.tolerance_ns {
            return Decision::Limited {
                retry_after_ns: ahead - self.tolerance_ns,
            };
        }
        *tat = next;
        Decision::Allowed {
            remaining: ((self.tolerance_ns - ahead) / self.interval_ns) as u32,
            reset_ns: ahead,
        }
    }
}

/// Forgets keys whose TAT has passed (they equal fresh keys), unless none can have.
fn sweep(shard: &mut Shard, now_ns: u64) {
    if now_ns < shard.sweep_after_ns {
        return;
    }
    shard.tats.retain(|_, tat| *tat > now_ns);
    shard.sweep_after_ns = shard.tats.values().copied().min().unwrap_or(u64::MAX);
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn allowed(decision: Decision) -> bool {
        matches!(decision, Decision::Allowed { .. })
    }

    #[test]
    fn burst_then_exactly_the_rate() {
        // 5 per minute, burst 5.
        let gcra = KeyedGcra::new(12 * SECOND, 5, 100);
        let start = 1_000 * SECOND;
        let allowed_now = (0..20).filter(|_| allowed(gcra.check(&"a", start))).count();
        assert_eq!(allowed_now, 5, "the burst, then nothing");
        assert_eq!(
            gcra.check(&"a", start),
            Decision::Limited {
                retry_after_ns: 12 * SECOND
            }
        );
        // Just before one interval: still limited; at it: one more.
        assert!(!allowed(gcra.check(&"a", start + 12 * SECOND - 1)));
        assert!(allowed(gcra.check(&"a", start + 12 * SECOND)));
        assert!(!allowed(gcra.check(&"a", start + 12 * SECOND)));
        // Over ten minutes at 100 requests per second: exactly 50 more allowed.
        let mut more = 0;
        for step in 1..=60_000u64 {
            if allowed(gcra.check(&"a", start + 12 * SECOND + step * SECOND / 100)) {
                more += 1;
            }
        }
        assert_eq!(more, 50);
        // Other keys are untouched.
        assert!(allowed(gcra.check(&"b", start)));
    }

    #[test]
    fn a_raised_tat_spends_the_budget_it_covers() {
        let gcra = KeyedGcra::new(SECOND, 4, 10);
        let now = 100 * SECOND;
        assert!(allowed(gcra.check(&"a", now)));
        // The rest of the fleet spent two more: one of the burst of four is left.
        gcra.raise(&"a", now + 3 * SECOND);
        assert!(allowed(gcra.check(&"a", now)));
        assert!(!allowed(gcra.check(&"a", now)));
        // A lower floor changes nothing; a key not seen yet starts from its floor.
        gcra.raise(&"a", now);
        assert!(!allowed(gcra.check(&"a", now)));
        gcra.raise(&"b", now + 4 * SECOND);
        assert!(!allowed(gcra.check(&"b", now)));
    }

    #[test]
    fn remaining_and_reset_count_down() {
        let gcra = KeyedGcra::new(SECOND, 3, 10);
        assert_eq!(
            gcra.check(&1, 0),
            Decision::Allowed {
                remaining: 2,
                reset_ns: SECOND
            }
        );
        assert_eq!(
            gcra.check(&1, 0),
            Decision::Allowed {
                remaining: 1,
                reset_ns: 2 * SECOND
            }
        );
        assert_eq!(
            gcra.check(&1, SECOND / 2),
            Decision::Allowed {
                remaining: 0,
                reset_ns: 5 * SECOND / 2
            }
        );
    }

    #[test]
    fn a_flood_of_keys_stays_bounded_and_cannot_evict_a_limited_key() {
        let max_keys = 64;
        let gcra = KeyedGcra::new(SECOND, 2, max_keys);
        let now = 10 * SECOND;
        assert!(allowed(gcra.check(&"victim", now)));
        assert!(allowed(gcra.check(&"victim", now)));
        assert!(!allowed(gcra.check(&"victim", now)));
        let mut flood_allowed = 0;
        for key in 0..100_000u32 {
            if allowed(gcra.check(&key, now)) {
                flood_allowed += 1;
            }
        }
        assert!(gcra.tracked() <= max_keys + SHARDS, "{}", gcra.tracked());
        // Tracked keys got their burst; the untracked rest shared one burst of 2.
        assert!(
            flood_allowed <= 2 * (gcra.tracked() - 1) + 2,
            "{flood_allowed} allowed"
        );
        assert!(
            !allowed(gcra.check(&"victim", now)),
            "the limited key kept its state"
        );
        // Once every TAT has passed, entries are swept and new keys are tracked again.
        let later = now + 10 * SECOND;
        assert!(allowed(gcra.check(&"newcomer", later)));
        assert!(allowed(gcra.check(&"newcomer", later)));
        assert!(!allowed(gcra.check(&"newcomer", later)));
    }
}
