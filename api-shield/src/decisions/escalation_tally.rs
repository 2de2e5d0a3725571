//! How many of this host's escalation bans are in force, for `escalation.max_active_bans`,
//! without reading the whole ban map in the path of the request that triggers a ban. The count
//! read from the map is kept for [`RECOUNT_AFTER`] and raised by every escalation ban made since;
//! past that, the next check starts a recount off the request's path and goes on with the count
//! it has. Bans that ended since the last count are seen at the next one: until then the count
//! errs high, refusing a ban early rather than letting one past the cap. The daemon asks
//! through `Decisions::own_escalation_bans`, defined here.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::Decisions;
use crate::fastpath::{Clock, FastpathError, PinnedMaps};

/// How long a count read from the map is used before it is read again.
pub(crate) const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// The count and what happened since it was read.
#[derive(Debug, Default)]
pub(crate) struct EscalationTally {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Escalation bans made by this process, ever.
    made: u64,
    /// The last count read from the map, the value of `made` when that read began, and when.
    counted: Option<(usize, u64, Instant)>,
    /// A recount is under way.
    recounting: bool,
}

/// What a check may go on with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Nothing counted yet: the caller counts (and records it with [`EscalationTally::counted`]).
    Unknown,
    /// Bans in force, as counted lately plus those made since.
    Current(usize),
    /// The same, but it is time to count again: the caller starts a recount of the map, begun
    /// when `made` was this value, and records it with [`EscalationTally::counted`] (or
    /// [`EscalationTally::recount_failed`]).
    Stale { count: usize, made: u64 },
}

impl EscalationTally {
    /// The count at `now`. A `Stale` reading is given to one caller at a time: the others get
    /// `Current` until that recount is recorded.
    pub(crate) fn reading(&self, now: Instant) -> Reading {
        let mut state = self.lock();
        let Some((count, made_then, at)) = state.counted else {
            return Reading::Unknown;
        };
        let count =
            count.saturating_add(usize::try_from(state.made - made_then).unwrap_or(usize::MAX));
        if state.recounting || now.saturating_duration_since(at) < RECOUNT_AFTER {
            return Reading::Current(count);
        }
        state.recounting = true;
        Reading::Stale {
            count,
            made: state.made,
        }
    }

    /// The value of `made` for a count about to begin (see [`Reading::Stale`]).
    pub(crate) fn made(&self) -> u64 {
        self.lock().made
    }

    /// A count of `count` bans read from the map, begun at `at` when `made` was `made_then`.
    /// Bans made since then are added to it (one made while the map was read may be counted
    /// twice until the next count: the error is on the side of the cap).
    pub(crate) fn counted(&self, count: usize, made_then: u64, at: Instant) {
        let mut state = self.lock();
        state.counted = Some((count, made_then, at));
        state.recounting = false;
    }

    /// A recount that failed: the next check tries again.
    pub(crate) fn recount_failed(&self) {
        self.lock().recounting = false;
    }

    /// One escalation ban made.
    pub(crate) fn ban_made(&self) {
        self.lock().made += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the tally lock is never poisoned")
    }
}

impl Decisions {
    /// Escalation bans in force that this host made (what `escalation.max_active_bans` caps:
    /// the fleet's bans from other hosts do not count). The ban map is read the first time;
    /// after that, a count read lately plus the bans made since, recounted off the caller's
    /// path once it is [`RECOUNT_AFTER`] old (an escalation ban is decided
    /// in a request's path, and the map may hold a million bans).
    pub(crate) fn own_escalation_bans(&self) -> Result<usize, FastpathError> {
        let now = Instant::now();
        match self.escalation.reading(now) {
            Reading::Current(count) => Ok(count),
            Reading::Unknown => {
                let made = self.escalation.made();
                let count = count_own_escalation_bans(&self.maps, &*self.clock, self.own_host())?;
                self.escalation.counted(count, made, now);
                Ok(count)
            }
            Reading::Stale { count, made } => {
                self.recount_escalation_bans(made, now);
                Ok(count)
            }
        }
    }

    /// Counts this host's escalation bans in the map on the blocking pool (inline without a
    /// runtime), for a recount begun at `began` when the tally's `made` was `made`.
    fn recount_escalation_bans(&self, made: u64, began: Instant) {
        let maps = Arc::clone(&self.maps);
        let clock = Arc::clone(&self.clock);
        let own = self.own_host().map(str::to_owned);
        let tally = Arc::clone(&self.escalation);
        let recount = move || match count_own_escalation_bans(&maps, &*clock, own.as_deref()) {
            Ok(count) => tally.counted(count, made, began),
            Err(error) => {
                tally.recount_failed();
                tracing::error!(%error, "escalation: cannot count the bans in force");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(recount)),
            Err(_) => recount(),
        }
    }
}

/// Escalation bans in force in `maps` made by this host (`own`: its fleet name) or by no fleet
/// host.
fn count_own_escalation_bans(
    maps: &Mutex<PinnedMaps>,
    clock: &(dyn Clock + Send + Sync),
    own: Option<&str>,
) -> Result<usize, FastpathError> {
    let active = maps
        .lock()
        .expect("the maps lock is never poisoned")
        .ban_entries(clock)?;
    Ok(active
        .iter()
        .filter(|b| b.reason.starts_with("escalation:"))
        .filter(|b| b.origin.is_none() || b.origin.as_deref() == own)
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_used_for_a_while_raised_by_bans_made_since_then_read_again_once() {
        let tally = EscalationTally::default();
        let start = Instant::now();
        assert_eq!(tally.reading(start), Reading::Unknown);
        tally.counted(5, tally.made(), start);
        assert_eq!(tally.reading(start), Reading::Current(5));
        tally.ban_made();
        tally.ban_made();
        let later = start + RECOUNT_AFTER / 2;
        assert_eq!(tally.reading(later), Reading::Current(7));
        let stale = start + RECOUNT_AFTER;
        assert_eq!(tally.reading(stale), Reading::Stale { count: 7, made: 2 });
        // One recount at a time: the next checks go on with the count they have.
        assert_eq!(tally.reading(stale), Reading::Current(7));
        // The map, read from `made == 2`, holds 4 (three of the seven ended); a ban made
        // during the read is added on top.
        tally.ban_made();
        tally.counted(4, 2, stale);
        assert_eq!(tally.reading(stale), Reading::Current(5));
    }

    #[test]
    fn a_failed_recount_is_tried_again_by_the_next_check() {
        let tally = EscalationTally::default();
        let start = Instant::now();
        tally.counted(1, 0, start);
        let stale = start + RECOUNT_AFTER * 2;
        assert!(matches!(tally.reading(stale), Reading::Stale { .. }));
        tally.recount_failed();
        assert_eq!(tally.reading(stale), Reading::Stale { count: 1, made: 0 });
    }
}
