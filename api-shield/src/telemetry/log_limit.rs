//! Log lines a client can cause once per connection, at most once per source per interval: a
//! flood of refused connections makes one line per source per interval, with the count of the
//! lines left out since, instead of one per connection (the events themselves are counted in
//! metrics). Bounded: past [`SOURCES`] sources the table is cleared of those whose interval
//! has passed, and if none has, cleared whole (a line more, never unbounded memory).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Sources remembered at once.
const SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Last {
    logged: Instant,
    suppressed: u64,
}

/// One kind of line, limited per source.
#[derive(Debug)]
pub(crate) struct LogLimit {
    interval: Duration,
    last: Mutex<HashMap<IpAddr, Last>>,
}

impl LogLimit {
    /// At most one line per source per `interval`.
    pub(crate) fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(lines left out since the last one)` when a line about `source` may be written
    /// `now`, `None` when it is to be left out (and counted).
    pub(crate) fn allow(&self, source: IpAddr, now: Instant) -> Option<u64> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = last.get_mut(&source) {
            if now.duration_since(entry.logged) < self.interval {
                entry.suppressed += 1;
                return None;
            }
            let suppressed = entry.suppressed;
            *entry = Last {
                logged: now,
                suppressed: 0,
            };
            return Some(suppressed);
        }
        if last.len() >= SOURCES {
            let interval = self.interval;
            last.retain(|_, entry| now.duration_since(entry.logged) < interval);
            if last.len() >= SOURCES {
                last.clear();
            }
        }
        last.insert(
            source,
            Last {
                logged: now,
                suppressed: 0,
            },
        );
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_source_per_interval_with_the_count_left_out() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limit.allow(a, start), Some(0));
        for i in 1..=2314 {
            assert_eq!(limit.allow(a, start + Duration::from_millis(i)), None);
        }
        assert_eq!(limit.allow(b, start), Some(0), "another source is its own");
        assert_eq!(
            limit.allow(a, start + Duration::from_secs(10)),
            Some(2314),
            "the next line says how many were left out"
        );
        assert_eq!(limit.allow(a, start + Duration::from_secs(11)), None);
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_sources() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let now = Instant::now();
        for i in 0..3 * SOURCES as u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(i));
            assert_eq!(limit.allow(source, now), Some(0));
        }
        assert!(limit.last.lock().unwrap().len() <= SOURCES);
    }
}
