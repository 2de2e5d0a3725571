//! Deadlines of exchanges (`proxy.request_timeout`, an upstream's `response_timeout`) kept on
//! timers that a client connection lends to its exchanges, one after the other.
//!
//! `tokio::time::timeout` makes a timer for each request: it looks up the runtime, enters the
//! timer into the runtime's wheel and takes it out again at the end, both under the timer
//! driver's lock. With two of them per forwarded request, that showed in the proxy benchmark. A
//! connection here keeps one timer of each kind and moves it on for each exchange. Moving a
//! timer that is still entered to a later deadline is an atomic update; it is entered anew only
//! when it fired, or the deadline comes sooner. HTTP/1.1 runs one exchange at a time; on HTTP/2,
//! an exchange that finds the connection's timer lent to another stream makes its own.

use std::{
    future::Future,
    pin::Pin,
    sync::{Mutex, PoisonError},
    task::Poll,
};

use tokio::time::{Instant, Sleep};

/// The deadline passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// One kind of deadline of one connection's exchanges.
#[derive(Debug, Default)]
pub(crate) struct ExchangeTimer {
    /// The timer, when no exchange holds it (made at its first use).
    idle: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl ExchangeTimer {
    /// A connection's timer, made when an exchange first needs it.
    #[must_use]
    pub(crate) fn new() -> ExchangeTimer {
        ExchangeTimer::default()
    }

    /// Polls `exchange` until it completes, or `deadline` passes first.
    ///
    /// # Errors
    /// [`TimedOut`] when the deadline passed first (the exchange is left as it is).
    pub(crate) async fn run<F: Future>(
        &self,
        deadline: Instant,
        exchange: Pin<&mut F>,
    ) -> Result<F::Output, TimedOut> {
        let mut timer = self.lend(deadline);
        let result = race(exchange, timer.as_mut()).await;
        // Given back when the exchange ends; one dropped before (its client went away) is
        // not, and the next exchange makes a new one.
        self.give_back(timer);
        result
    }

    /// The connection's timer set to `deadline`, or a new one when it is lent already.
    fn lend(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        match self.lock().take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keeps `timer` for the next exchange, unless another came back first.
    fn give_back(&self, timer: Pin<Box<Sleep>>) {
        let mut idle = self.lock();
        if idle.is_none() {
            *idle = Some(timer);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pin<Box<Sleep>>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The exchange's output, or [`TimedOut`] once `timer` fired. The exchange is polled first, so
/// one that completes as the deadline passes still counts.
async fn race<F: Future>(
    mut exchange: Pin<&mut F>,
    mut timer: Pin<&mut Sleep>,
) -> Result<F::Output, TimedOut> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = exchange.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        // Unconstrained, as in tokio's own timeout: an exchange that spent the task's
        // cooperative budget must not keep its deadline from being seen.
        let mut timer = tokio::task::unconstrained(timer.as_mut());
        match Pin::new(&mut timer).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn an_exchange_that_ends_in_time_gives_its_output() {
        let timer = ExchangeTimer::new();
        let exchange = async {
            tokio::time::sleep(TIMEOUT / 2).await;
            7
        };
        tokio::pin!(exchange);
        let deadline = Instant::now() + TIMEOUT;
        assert_eq!(timer.run(deadline, exchange).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn an_exchange_past_its_deadline_times_out_then() {
        let timer = ExchangeTimer::new();
        let exchange = std::future::pending::<()>();
        tokio::pin!(exchange);
        let deadline = Instant::now() + TIMEOUT;
        assert_eq!(timer.run(deadline, exchange).await, Err(TimedOut));
        assert_eq!(Instant::now(), deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_moves_on_with_each_exchange_in_both_directions() {
        let timer = ExchangeTimer::new();
        for round in 1..=3u32 {
            // A later deadline than the last, then an earlier one relative to now.
            for timeout in [TIMEOUT, TIMEOUT / 3] {
                let exchange = std::future::pending::<()>();
                tokio::pin!(exchange);
                let deadline = Instant::now() + timeout;
                assert_eq!(
                    timer.run(deadline, exchange).await,
                    Err(TimedOut),
                    "{round}"
                );
                assert_eq!(Instant::now(), deadline, "round {round}");
            }
            let quick = async { round };
            tokio::pin!(quick);
            let deadline = Instant::now() + TIMEOUT;
            assert_eq!(timer.run(deadline, quick).await, Ok(round));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_exchanges_each_keep_their_own_deadline() {
        let timer = ExchangeTimer::new();
        let start = Instant::now();
        let (a, b) = tokio::join!(
            async {
                let exchange = std::future::pending::<()>();
                tokio::pin!(exchange);
                let result = timer.run(start + TIMEOUT, exchange).await;
                (result, Instant::now())
            },
            async {
                let exchange = std::future::pending::<()>();
                tokio::pin!(exchange);
                let result = timer.run(start + TIMEOUT / 2, exchange).await;
                (result, Instant::now())
            },
        );
        assert_eq!(a, (Err(TimedOut), start + TIMEOUT));
        assert_eq!(b, (Err(TimedOut), start + TIMEOUT / 2));
        // One timer is back for the next exchange.
        assert!(timer.idle.lock().unwrap().is_some());
    }

    #[tokio::test]
    async fn a_busy_exchange_cannot_hide_its_deadline() {
        // An exchange that always spends the cooperative budget and never completes.
        let timer = ExchangeTimer::new();
        let exchange = async {
            loop {
                tokio::task::consume_budget().await;
            }
        };
        tokio::pin!(exchange);
        let deadline = Instant::now() + Duration::from_millis(10);
        let outcome = tokio::time::timeout(Duration::from_secs(5), timer.run(deadline, exchange));
        assert_eq!(outcome.await, Ok(Err(TimedOut)));
    }
}
