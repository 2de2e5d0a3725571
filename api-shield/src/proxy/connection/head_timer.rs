//! The header-read timeout of HTTP/1.1 connections (`proxy.header_timeout`, the slowloris
//! defence), kept by the connection's watchdog rather than by a timer per request.
//!
//! hyper asks its `Timer` for a sleep each time it starts waiting for a request head, and drops
//! the sleep once the head is in. hyper-util's `TokioTimer` answers with a boxed tokio sleep,
//! entered into the runtime's timer wheel and taken out again: for every request. [`HeadTimer`]
//! only writes the head's deadline into a cell that the connection shares with its watchdog,
//! and [`HeadDeadline::overdue`] reads that cell at most about once per `header_timeout`. A
//! connection whose head is late is closed, as hyper would close it. The rule stays hyper's:
//! the deadline counts from when hyper starts waiting for a head, so a keep-alive connection
//! left without a next request is closed after `header_timeout` as well. (hyper 1.12 uses the
//! HTTP/1 timer for nothing else; HTTP/2 keeps tokio's timer for its keep-alive pings.)
//!
//! Measured under bench-proxy's load against `TokioTimer`: see BENCHMARKS.md ("hyper's
//! header-read timer").

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::Instant;

/// No head is awaited.
const NONE: u64 = 0;

/// The cell: when the head being awaited is due, in nanoseconds after `base` (never 0), or
/// [`NONE`].
#[derive(Debug)]
struct Shared {
    base: Instant,
    due_ns: AtomicU64,
}

impl Shared {
    fn encode(&self, deadline: Instant) -> u64 {
        let after = deadline.saturating_duration_since(self.base).as_nanos();
        u64::try_from(after).unwrap_or(u64::MAX).max(1)
    }

    fn due(&self) -> Option<Instant> {
        match self.due_ns.load(Ordering::Acquire) {
            NONE => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }
}

/// One connection's head deadline, as its watchdog sees it.
#[derive(Debug, Clone)]
pub(crate) struct HeadDeadline {
    shared: Arc<Shared>,
}

impl Default for HeadDeadline {
    fn default() -> Self {
        HeadDeadline::new()
    }
}

impl HeadDeadline {
    /// A connection with no head awaited yet.
    #[must_use]
    pub(crate) fn new() -> HeadDeadline {
        HeadDeadline {
            shared: Arc::new(Shared {
                base: Instant::now(),
                due_ns: AtomicU64::new(NONE),
            }),
        }
    }

    /// The timer to give hyper's HTTP/1 builder for this connection.
    #[must_use]
    pub(crate) fn timer(&self) -> HeadTimer {
        HeadTimer {
            shared: Arc::clone(&self.shared),
        }
    }

    /// When the head being awaited is due, if one is.
    #[must_use]
    pub(crate) fn due(&self) -> Option<Instant> {
        self.shared.due()
    }

    /// Completes once a request head has been awaited past its deadline. While none is late it
    /// wakes at most once per `header_timeout`, or at the deadline of the head awaited.
    pub(crate) async fn overdue(&self, header_timeout: Duration) {
        let sleep = tokio::time::sleep(header_timeout);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            let wake_at = match self.due() {
                Some(due) if due <= now => return,
                Some(due) => due,
                // A head awaited from before this wake-up is due after it: it is seen then.
                None => now + header_timeout,
            };
            sleep.as_mut().reset(wake_at);
            sleep.as_mut().await;
        }
    }
}

/// hyper's `Timer` for one connection: its sleeps only record the head's deadline.
#[derive(Debug, Clone)]
pub(crate) struct HeadTimer {
    shared: Arc<Shared>,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let due_ns = self.shared.encode(Instant::from_std(deadline));
        self.shared.due_ns.store(due_ns, Ordering::Release);
        Box::pin(HeadSleep {
            shared: Arc::clone(&self.shared),
            due_ns,
        })
    }

    fn now(&self) -> std::time::Instant {
        // tokio's clock, so that the watchdog (on tokio's clock) agrees, also when paused.
        Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

/// A head being awaited. It never completes by itself: at its deadline the watchdog closes the
/// connection, which is what hyper does when it sees its sleep complete. Dropped (the head is
/// in), it clears the deadline unless a newer one took its place.
#[derive(Debug)]
struct HeadSleep {
    shared: Arc<Shared>,
    due_ns: u64,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        let _ = self.shared.due_ns.compare_exchange(
            self.due_ns,
            NONE,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use hyper::rt::Timer;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn is_pending(future: Pin<&mut (impl Future + ?Sized)>) -> bool {
        future
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_records_the_deadline_and_clears_it_when_dropped() {
        let head = HeadDeadline::new();
        let timer = head.timer();
        assert_eq!(head.due(), None);
        let mut sleep = timer.sleep(TIMEOUT);
        let due = head.due().expect("a head is awaited");
        assert_eq!(due, Instant::now() + TIMEOUT);
        assert!(is_pending(sleep.as_mut()));
        drop(sleep);
        assert_eq!(head.due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_older_sleep_dropped_late_leaves_the_newer_deadline() {
        let head = HeadDeadline::new();
        let timer = head.timer();
        let older = timer.sleep(TIMEOUT);
        tokio::time::advance(Duration::from_secs(1)).await;
        let newer = timer.sleep(TIMEOUT);
        drop(older);
        assert_eq!(head.due(), Some(Instant::now() + TIMEOUT));
        drop(newer);
        assert_eq!(head.due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline() {
        let head = HeadDeadline::new();
        let timer = head.timer();
        let mut sleep = timer.sleep(TIMEOUT);
        let later = timer.now() + 2 * TIMEOUT;
        timer.reset(&mut sleep, later);
        assert_eq!(head.due(), Some(Instant::from_std(later)));
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_head_awaited_the_watchdog_never_fires() {
        let head = HeadDeadline::new();
        let overdue = head.overdue(TIMEOUT);
        tokio::pin!(overdue);
        for _ in 0..10 {
            assert!(is_pending(overdue.as_mut()));
            tokio::time::advance(TIMEOUT).await;
        }
        assert!(is_pending(overdue.as_mut()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_received_in_time_does_not_fire_it() {
        let head = HeadDeadline::new();
        let timer = head.timer();
        let overdue = head.overdue(TIMEOUT);
        tokio::pin!(overdue);
        assert!(is_pending(overdue.as_mut()));
        for _ in 0..5 {
            let sleep = timer.sleep(TIMEOUT);
            tokio::time::advance(TIMEOUT.saturating_sub(Duration::from_millis(1))).await;
            assert!(is_pending(overdue.as_mut()));
            drop(sleep);
            tokio::time::advance(TIMEOUT).await;
            assert!(is_pending(overdue.as_mut()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_head_fires_it_at_its_own_deadline() {
        let head = HeadDeadline::new();
        let timer = head.timer();
        let started = Instant::now();
        let overdue = head.overdue(TIMEOUT);
        tokio::pin!(overdue);
        assert!(is_pending(overdue.as_mut()));
        // The head starts between two of the watchdog's wake-ups, which must not delay it.
        tokio::time::advance(TIMEOUT / 2).await;
        let _sleep = timer.sleep(TIMEOUT);
        let due = Instant::now() + TIMEOUT;
        tokio::time::timeout(3 * TIMEOUT, overdue)
            .await
            .expect("the watchdog fires");
        assert_eq!(Instant::now(), due);
        assert!(Instant::now() - started < 2 * TIMEOUT);
    }
}
