//! The sources the XDP program started dropping recently (from its drop-start events), for
//! `api-shield top`. Bounded: the least recently seen source goes first.

use std::{collections::HashMap, net::IpAddr, sync::Mutex, time::Instant};

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::fastpath::DropStarted;

/// Sources kept.
const CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
struct Seen {
    reason: String,
    events: u64,
    last: Instant,
}

/// Recent drop-start events per source.
#[derive(Debug, Default)]
pub(crate) struct RecentDrops(Mutex<HashMap<IpAddr, Seen>>);

/// One row of `top`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DropRow {
    /// The source.
    pub source: String,
    /// Why it is dropped.
    pub reason: Cow<'static, str>,
    /// Drop-start events (at most one per source per `fastpath.events.interval`).
    pub events: u64,
    /// Seconds since the last one.
    pub last_seen_secs: u64,
}

impl RecentDrops {
    /// Records an event.
    pub(crate) fn record(&self, event: &DropStarted) {
        let mut seen = self.0.lock().expect("never poisoned");
        if !seen.contains_key(&event.source) && seen.len() >= CAPACITY {
            if let Some(oldest) = seen.iter().min_by_key(|(_, s)| s.last).map(|(ip, _)| *ip) {
                seen.remove(&oldest);
            }
        }
        let entry = seen.entry(event.source).or_insert(Seen {
            reason: String::new(),
            events: 0,
            last: Instant::now(),
        });
        entry.reason = event.cause();
        entry.events += 1;
        entry.last = Instant::now();
    }

    /// The `limit` sources with the most events.
    pub(crate) fn top(&self, limit: usize) -> Vec<DropRow> {
        let seen = self.0.lock().expect("never poisoned");
        let mut rows: Vec<DropRow> = seen
            .iter()
            .map(|(ip, s)| DropRow {
                source: ip.to_string(),
                reason: Cow::Owned(s.reason.clone()),
                events: s.events,
                last_seen_secs: s.last.elapsed().as_secs(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.events
                .cmp(&a.events)
                .then(a.last_seen_secs.cmp(&b.last_seen_secs))
        });
        rows.truncate(limit);
        rows
    }
}
