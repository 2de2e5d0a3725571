//! A fleet-scoped rate limit's side of the fleet's shared budget. Each host decides every
//! request itself, at once, against its own GCRA state; it notes per key how many requests it
//! admitted, and the fleet link (`fleet/limits.rs`) sends those counts to Redis in batches,
//! every 50 ms, where one script advances each key's shared TAT by what every host admitted and
//! answers how far ahead of Redis's clock the TAT now is. The host raises its own TAT to that,
//! so what the other hosts spent is spent here too, one sync later. No request waits on Redis;
//! without Redis the limit is this host's alone.
//!
//! The limits register themselves in a process-wide list (as the metrics registry is
//! process-wide) so the link finds them across reloads without the policy compiler knowing of
//! the fleet: a limit dropped by a reload leaves the list with its last reference.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, Weak},
};

use super::{gcra::KeyedGcra, SharedClock};

/// A fleet-scoped limit's shared state.
#[derive(Debug)]
pub struct FleetShare {
    /// The route's name (the keys in Redis are under it).
    pub route: String,
    /// Nanoseconds per request at the configured rate.
    pub interval_ns: u64,
    /// The burst's worth of nanoseconds: what Redis may answer is bounded by it.
    tolerance_ns: u64,
    gcra: Arc<KeyedGcra>,
    clock: SharedClock,
    /// Requests admitted per key since the last sync.
    pending: Mutex<HashMap<String, u32>>,
    max_keys: usize,
}

fn registry() -> &'static Mutex<Vec<Weak<FleetShare>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<FleetShare>>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

impl FleetShare {
    /// A share of `gcra`'s limit for `route`, registered for the fleet link.
    pub(super) fn new(
        route: &str,
        interval_ns: u64,
        tolerance_ns: u64,
        gcra: Arc<KeyedGcra>,
        clock: SharedClock,
        max_keys: usize,
    ) -> Arc<FleetShare> {
        let share = Arc::new(FleetShare {
            route: route.to_owned(),
            interval_ns,
            tolerance_ns,
            gcra,
            clock,
            pending: Mutex::default(),
            max_keys,
        });
        let mut live = registry().lock().expect("never poisoned");
        live.retain(|w| w.strong_count() > 0);
        live.push(Arc::downgrade(&share));
        share
    }

    /// Every fleet-scoped limit alive now.
    pub fn live() -> Vec<Arc<FleetShare>> {
        registry()
            .lock()
            .expect("never poisoned")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Notes one admitted request of `key` (at most `max_keys` keys wait for a sync; past it,
    /// new keys count on this host only until the next).
    pub(super) fn admitted(&self, key: String) {
        let mut pending = self.pending.lock().expect("never poisoned");
        let len = pending.len();
        match pending.get_mut(&key) {
            Some(n) => *n = n.saturating_add(1),
            None if len < self.max_keys => {
                pending.insert(key, 1);
            }
            None => {}
        }
    }

    /// The counts since the last sync, emptied.
    pub fn take(&self) -> HashMap<String, u32> {
        std::mem::take(&mut *self.pending.lock().expect("never poisoned"))
    }

    /// What Redis answered for `key`: the shared TAT is `ahead_ns` past now. Hosts that
    /// admitted together can push it past the burst, but not far: an answer beyond twice the
    /// burst and a second (a value written by hand) is held to that.
    pub fn spent_elsewhere(&self, key: &str, ahead_ns: u64) {
        let bound = self
            .tolerance_ns
            .saturating_mul(2)
            .saturating_add(1_000_000_000);
        let floor = self
            .clock
            .monotonic_ns()
            .saturating_add(ahead_ns.min(bound));
        self.gcra.raise(&key, floor);
    }
}
