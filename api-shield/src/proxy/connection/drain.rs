//! Graceful stop: listeners stop accepting, open connections are asked to finish (HTTP/1.1
//! after the response in progress, HTTP/2 with GOAWAY), and the stop waits for them, up to
//! `proxy.drain_timeout`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::{watch, Notify};

#[derive(Debug, Default)]
struct Open {
    count: AtomicUsize,
    idle: Notify,
}

/// The stop signal and the count of open connections.
#[derive(Debug)]
pub(crate) struct Drain {
    signal: watch::Sender<bool>,
    open: Arc<Open>,
}

/// What listeners and connections hold: the signal to watch, and the count to join.
#[derive(Debug, Clone)]
pub(crate) struct Watcher {
    signal: watch::Receiver<bool>,
    open: Arc<Open>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub(crate) struct Held(Arc<Open>);

impl Default for Drain {
    fn default() -> Self {
        Drain {
            signal: watch::channel(false).0,
            open: Arc::default(),
        }
    }
}

impl Drain {
    /// A watcher for a listener.
    pub(crate) fn watcher(&self) -> Watcher {
        Watcher {
            signal: self.signal.subscribe(),
            open: Arc::clone(&self.open),
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.count.load(Ordering::SeqCst)
    }

    /// Signals the stop and waits until every connection has closed or `timeout` passed; true
    /// when all closed in time.
    pub(crate) async fn drain(&self, timeout: Duration) -> bool {
        self.signal.send_replace(true);
        tokio::time::timeout(timeout, async {
            loop {
                // Registered before the check, so a close in between is not missed.
                let idle = self.open.idle.notified();
                if self.open.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok()
    }
}

impl Watcher {
    /// Counts a connection until the returned value is dropped.
    pub(crate) fn hold(&self) -> Held {
        self.open.count.fetch_add(1, Ordering::SeqCst);
        Held(Arc::clone(&self.open))
    }

    /// Resolves once the stop is signalled (or the drain is gone).
    pub(crate) async fn stopping(&mut self) {
        while !*self.signal.borrow_and_update() {
            if self.signal.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_held_connections_up_to_the_timeout() {
        let drain = Drain::default();
        let mut watcher = drain.watcher();
        let held = watcher.hold();
        assert_eq!(drain.open(), 1);
        let closer = tokio::spawn(async move {
            watcher.stopping().await;
            drop(held);
        });
        assert!(drain.drain(Duration::from_secs(5)).await);
        closer.await.unwrap();
        assert_eq!(drain.open(), 0);
        // A connection that never closes: the drain gives up at the timeout.
        let stuck = drain.watcher().hold();
        assert!(!drain.drain(Duration::from_millis(50)).await);
        drop(stuck);
    }
}
