//! Runs a client connection beside its watchdog (the idle timeout, the head deadline and the stop
//! signal) without polling the watchdog each time the connection's task wakes up.
//!
//! `tokio::select!` polls every branch on every wake-up: a connection task wakes several times
//! per request (the request arrives, the upstream answers, the write completes), and each time
//! the idle timer re-registered its waker and the stop signal's `Notify` took its lock. Here the
//! watchdog is polled with a waker of its own, so it is polled again only once its timer or
//! signal has fired. Measured under bench-proxy's load: 3.5 % less user CPU per request (with no
//! watchdog at all, the ceiling of this change, 2-3 % more requests/s).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll, Wake, Waker},
};

/// How a supervised connection ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended<T, E> {
    /// The connection finished on its own, with its result.
    Served(T),
    /// The watchdog fired first, with what it saw; the connection is still open.
    Watchdog(E),
}

/// The watchdog's waker: records that the watchdog has something to say and wakes the task.
#[derive(Debug, Default)]
struct WatchdogWake {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for WatchdogWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Polls `connection` until it ends, or `watchdog` until it fires, whichever comes first; the
/// watchdog only when it was woken (and once at the start, to arm it).
pub(crate) fn supervise<C, W>(connection: C, watchdog: W) -> Supervised<C, W>
where
    C: Future + Unpin,
    W: Future,
{
    let wake = Arc::new(WatchdogWake {
        woken: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    Supervised {
        connection,
        watchdog: Box::pin(watchdog),
        watchdog_waker: Waker::from(Arc::clone(&wake)),
        wake,
        task: None,
    }
}

/// The future [`supervise`] returns.
pub(crate) struct Supervised<C, W> {
    connection: C,
    watchdog: Pin<Box<W>>,
    wake: Arc<WatchdogWake>,
    watchdog_waker: Waker,
    /// The task waker the watchdog's wake-ups are passed to, as last given to it.
    task: Option<Waker>,
}

impl<C: Future + Unpin, W: Future> Future for Supervised<C, W> {
    type Output = Ended<C::Output, W::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Every field is Unpin (the watchdog is boxed).
        let this = self.get_mut();
        if !this.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            let task = cx.waker().clone();
            *this
                .wake
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task.clone());
            this.task = Some(task);
        }
        // The watchdog first when it was woken, so that it polls with the task's fresh
        // cooperative budget: a busy connection spending the budget on every poll would
        // otherwise keep it from ever seeing its signal.
        if this.wake.woken.swap(false, Ordering::Acquire) {
            let mut watchdog_cx = Context::from_waker(&this.watchdog_waker);
            if let Poll::Ready(event) = this.watchdog.as_mut().poll(&mut watchdog_cx) {
                return Poll::Ready(Ended::Watchdog(event));
            }
        }
        Pin::new(&mut this.connection).poll(cx).map(Ended::Served)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicUsize, time::Duration};

    use super::*;

    /// A watchdog that counts its polls and fires after `sleep`.
    fn counted(polls: &Arc<AtomicUsize>, sleep: Duration) -> impl Future<Output = &'static str> {
        let polls = Arc::clone(polls);
        let mut sleep = Box::pin(tokio::time::sleep(sleep));
        std::future::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            sleep.as_mut().poll(cx).map(|()| "fired")
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_not_polled_when_only_the_connection_wakes() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let connection = Box::pin(async move {
            let mut total = 0;
            while let Some(n) = receiver.recv().await {
                total += n;
            }
            total
        });
        let feeder = tokio::spawn(async move {
            for n in 1..=100 {
                sender.send(n).unwrap();
                tokio::task::yield_now().await;
            }
        });
        let ended = supervise(connection, counted(&polls, Duration::from_mins(1))).await;
        feeder.await.unwrap();
        assert_eq!(ended, Ended::Served(5050));
        // Armed once at the start; the hundred wake-ups of the connection did not poll it.
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_firing_watchdog_ends_the_wait_with_the_connection_still_pending() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut connection = Box::pin(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        let ended = supervise(
            connection.as_mut(),
            counted(&polls, Duration::from_secs(30)),
        )
        .await;
        assert_eq!(ended, Ended::Watchdog("fired"));
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    /// A waker counting its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_watchdog_wake_up_goes_to_the_task_that_polled_last() {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut supervised = supervise(std::future::pending::<()>(), stopped);
        let first = Arc::new(CountingWaker::default());
        let second = Arc::new(CountingWaker::default());
        let poll_with = |supervised: &mut Supervised<_, _>, waker: &Arc<CountingWaker>| {
            let waker = Waker::from(Arc::clone(waker));
            Pin::new(supervised).poll(&mut Context::from_waker(&waker))
        };
        assert!(poll_with(&mut supervised, &first).is_pending());
        assert!(poll_with(&mut supervised, &second).is_pending());
        stop.send(()).unwrap();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            poll_with(&mut supervised, &second),
            Poll::Ready(Ended::Watchdog(Ok(())))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_connection_keeps_being_polled_after_the_watchdog_was_armed() {
        let polls = Arc::new(AtomicUsize::new(0));
        let connection = Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "served"
        });
        let ended = supervise(connection, counted(&polls, Duration::from_secs(30))).await;
        assert_eq!(ended, Ended::Served("served"));
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }
}
