//! The clock policies read (token expiry, key expiry, rate limits, sunsets): the system's in
//! the daemon, a hand-moved one in tests so their counts are exact.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use crate::fastpath::{Clock, SystemClock};

/// A clock policies can share across tasks.
pub trait PolicyClock: Clock + std::fmt::Debug + Send + Sync {}

impl<T: Clock + std::fmt::Debug + Send + Sync> PolicyClock for T {}

/// The clock shared by every policy of a proxy.
pub type SharedClock = Arc<dyn PolicyClock>;

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Seconds since the Unix epoch on `clock`'s wall clock.
pub fn unix_seconds(clock: &dyn Clock) -> u64 {
    clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// A clock that moves only when told: both of its readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    monotonic_ns: AtomicU64,
    wall_unix_ns: AtomicU64,
}

impl ManualClock {
    /// A clock reading `wall_unix_secs` on the wall and an arbitrary monotonic start.
    pub fn new(wall_unix_secs: u64) -> ManualClock {
        ManualClock {
            monotonic_ns: AtomicU64::new(1_000_000_000_000),
            wall_unix_ns: AtomicU64::new(wall_unix_secs * 1_000_000_000),
        }
    }

    /// Moves both readings forward.
    pub fn advance(&self, by: Duration) {
        let ns = by.as_nanos() as u64;
        self.monotonic_ns.fetch_add(ns, Ordering::SeqCst);
        self.wall_unix_ns.fetch_add(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns.load(Ordering::SeqCst)
    }

    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.wall_unix_ns.load(Ordering::SeqCst))
    }
}
