//! What the soak's own clients saw, counted as they go (atomics shared by every task) and
//! snapshotted with each sample: legitimate requests and their failures, hostile actions and
//! how the shield answered them, connects that died at the NIC, and the abandoned connections
//! the daemon closed (reaped) with the longest time it took.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// Live counters.
#[derive(Debug, Default)]
pub struct Counts {
    /// Legitimate requests sent.
    pub legit_sent: AtomicU64,
    /// Legitimate requests answered with the expected status.
    pub legit_ok: AtomicU64,
    /// Legitimate requests that failed (another status, or no answer).
    pub legit_failed: AtomicU64,
    /// Legitimate keep-alive connections found closed by the server between two requests.
    pub legit_reconnects: AtomicU64,
    /// Hostile requests and connections made.
    pub hostile_actions: AtomicU64,
    /// Hostile requests the shield refused (4xx).
    pub hostile_refused: AtomicU64,
    /// Hostile requests served (2xx: the greedy client within its budget).
    pub hostile_served: AtomicU64,
    /// Hostile connects or exchanges that timed out: the source was banned at the NIC.
    pub nic_timeouts: AtomicU64,
    /// Connections the clients reset (RST) mid-request.
    pub resets: AtomicU64,
    /// Abandoned (idle or slowloris) connections open now.
    pub held_open: AtomicU64,
    /// Abandoned connections the daemon closed.
    pub reaped: AtomicU64,
    /// The longest an abandoned connection stayed open (ms).
    pub longest_reap_ms: AtomicU64,
    /// The first few legitimate failures, for the report.
    pub failures: Mutex<Vec<String>>,
}

/// A copy of the counters at one moment (the fields mean what [`Counts`]' do).
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub legit_sent: u64,
    pub legit_ok: u64,
    pub legit_failed: u64,
    pub legit_reconnects: u64,
    pub hostile_actions: u64,
    pub hostile_refused: u64,
    pub hostile_served: u64,
    pub nic_timeouts: u64,
    pub resets: u64,
    pub held_open: u64,
    pub reaped: u64,
    pub longest_reap_ms: u64,
}

impl Counts {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A legitimate failure: counted, and its description kept when it is among the first ten.
    pub fn legit_failure(&self, what: String) {
        Counts::bump(&self.legit_failed);
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() < 10 {
            failures.push(what);
        }
    }

    /// An abandoned connection the daemon closed after `open`.
    pub fn reaped_after(&self, open: Duration) {
        Counts::bump(&self.reaped);
        self.longest_reap_ms.fetch_max(
            u64::try_from(open.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            legit_sent: get(&self.legit_sent),
            legit_ok: get(&self.legit_ok),
            legit_failed: get(&self.legit_failed),
            legit_reconnects: get(&self.legit_reconnects),
            hostile_actions: get(&self.hostile_actions),
            hostile_refused: get(&self.hostile_refused),
            hostile_served: get(&self.hostile_served),
            nic_timeouts: get(&self.nic_timeouts),
            resets: get(&self.resets),
            held_open: get(&self.held_open),
            reaped: get(&self.reaped),
            longest_reap_ms: get(&self.longest_reap_ms),
        }
    }
}

/// Holds one in [`Counts::held_open`] while alive.
pub struct Held<'a>(&'a AtomicU64);

impl<'a> Held<'a> {
    /// Counts one more open abandoned connection.
    pub fn new(counter: &'a AtomicU64) -> Held<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Held(counter)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
