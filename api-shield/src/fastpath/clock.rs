//! The kernel's monotonic clock (what `bpf_ktime_get_ns` reads) and the wall clock, so ban
//! expiry can be stored in one and shown in the other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Source of both clocks; tests use a fixed one.
pub trait Clock {
    /// `CLOCK_MONOTONIC` in nanoseconds.
    fn monotonic_ns(&self) -> u64;
    /// Wall-clock time.
    fn wall(&self) -> SystemTime;

    /// The wall-clock time of a monotonic instant.
    fn wall_of(&self, monotonic_ns: u64) -> SystemTime {
        let now_mono = self.monotonic_ns();
        let now_wall = self.wall();
        if monotonic_ns >= now_mono {
            now_wall + Duration::from_nanos(monotonic_ns - now_mono)
        } else {
            now_wall - Duration::from_nanos(now_mono - monotonic_ns)
        }
    }
}

/// The real clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn monotonic_ns(&self) -> u64 {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .expect("CLOCK_MONOTONIC always exists on Linux");
        ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
