//! The threads that serve client connections when `proxy.workers` is above 1: each runs a
//! single-threaded runtime of its own, and a connection, once accepted, lives on one of them
//! until it closes, with every task it spawns (HTTP/2 streams, upstream connections). This is
//! how nginx, HAProxy and Envoy run their workers. At 2 workers, one work-stealing runtime for
//! all connections spent 1.3x (HTTP/1.1) and 1.5x (HTTP/2) the CPU per request these workers
//! spend, with idle upstream connections kept per worker (bench-gateway): its idle workers
//! search each other's queues, and a connection's wake-ups cross CPUs.
//!
//! The accept loops stay on the daemon's own runtime and hand each connection to the worker
//! with the fewest open connections, so a few busy keep-alive clients do not pile onto one
//! thread as a hash of their addresses (`SO_REUSEPORT`) could.

use std::{
    cell::Cell,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use tokio::{runtime::Handle, sync::oneshot};

thread_local! {
    /// This thread's worker number, from 1; 0 on every other thread (the daemon's own, where
    /// connections run with one worker).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

tokio::task_local! {
    /// The count of the connection a worker's task serves (see [`hold_open`]).
    static OPEN: Arc<OpenConnection>;
}

/// Keeps the current connection counted on its worker while the value lives, for work that
/// outlives the connection's own task (a spliced WebSocket); `None` off the workers.
pub(crate) fn hold_open() -> Option<Arc<OpenConnection>> {
    OPEN.try_with(Arc::clone).ok()
}

/// The worker this thread is, from 1 (0 off the worker threads): what keeps per-worker state,
/// such as an upstream's idle connections, with the thread that drives it.
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Why the worker threads could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkersError {
    /// A worker's runtime or thread could not be created.
    #[error("starting connection worker {index}: {source}")]
    Start {
        /// Which worker.
        index: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One worker: its runtime's handle and the connections it holds.
#[derive(Debug)]
struct Worker {
    handle: Handle,
    open: AtomicUsize,
}

/// The running workers; dropped, each runtime stops on its own thread (the tasks still on it
/// are cancelled, so drain the connections first).
#[derive(Debug)]
pub(crate) struct Workers {
    each: Arc<[Worker]>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` worker threads.
    pub(crate) fn start(count: usize) -> Result<Workers, WorkersError> {
        let mut workers = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| WorkersError::Start { index, source })?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("api-shield-worker-{index}"))
                .spawn(move || {
                    WORKER.with(|worker| worker.set(index + 1));
                    // Runs its tasks until told to stop (or the sender is dropped).
                    let _ = runtime.block_on(stopped);
                })
                .map_err(|source| WorkersError::Start { index, source })?;
            threads.push(thread);
            workers.push(Worker {
                handle,
                open: AtomicUsize::new(0),
            });
            stops.push(stop);
        }
        Ok(Workers {
            each: workers.into(),
            stops,
            threads,
        })
    }

    /// Stops every worker and waits until each has dropped what still ran on it (so the access
    /// log has the lines of the exchanges cut short before the daemon writes its last ones).
    pub(crate) async fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        });
        let _ = joined.await;
    }

    /// A handle that hands connections to these workers.
    pub(crate) fn dispatcher(&self) -> Dispatcher {
        Dispatcher {
            workers: Arc::clone(&self.each),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// Hands connections to the least busy worker.
#[derive(Debug, Clone)]
pub(crate) struct Dispatcher {
    workers: Arc<[Worker]>,
}

impl Dispatcher {
    /// Runs the future that `serve` makes on the worker with the fewest open connections, the
    /// worker's count raised until it ends. `serve` runs on the worker, so what it creates (a
    /// socket registered with the worker's reactor) belongs to it.
    pub(crate) fn spawn<F, Fut>(&self, serve: F) -> tokio::task::JoinHandle<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let index = self.least_busy();
        let workers = Arc::clone(&self.workers);
        workers[index].open.fetch_add(1, Ordering::Relaxed);
        let open = Arc::new(OpenConnection { workers, index });
        // `serve` is called on its first poll, that is on the worker's thread, which a task of
        // a current-thread runtime never leaves.
        self.workers[index]
            .handle
            .spawn(async move { OPEN.scope(open, async move { serve().await }).await })
    }

    /// Moves the accepted `stream` from this thread's reactor to the least busy worker's and
    /// serves it there with `serve`.
    pub(crate) fn take<F, Fut>(&self, stream: tokio::net::TcpStream, peer: SocketAddr, serve: F)
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%peer, %error, "connection lost before it was handed to a worker");
                return;
            }
        };
        self.spawn(move || async move {
            match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => serve(stream).await,
                Err(error) => tracing::warn!(%peer, %error, "a worker could not take a connection"),
            }
        });
    }

    fn least_busy(&self) -> usize {
        self.workers
            .iter()
            .enumerate()
            .min_by_key(|(_, worker)| worker.open.load(Ordering::Relaxed))
            .map_or(0, |(index, _)| index)
    }

    /// Open connections per worker, in worker order.
    #[cfg(test)]
    pub(crate) fn open(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|worker| worker.open.load(Ordering::Relaxed))
            .collect()
    }
}

/// Lowers a worker's count when its connection ends (also when the task is cancelled) and
/// whatever [`hold_open`] lent out is dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection {
    workers: Arc<[Worker]>,
    index: usize,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.workers[self.index]
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker() {
        let workers = Workers::start(2).unwrap();
        let dispatcher = workers.dispatcher();
        let mut ends = Vec::new();
        let mut runs = Vec::new();
        let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let (end, ended) = oneshot::channel::<()>();
            ends.push(end);
            let started = started.clone();
            runs.push(dispatcher.spawn(move || async move {
                let on = thread_name();
                assert_eq!(on, format!("api-shield-worker-{}", current() - 1));
                started.send(on).unwrap();
                let _ = ended.await;
            }));
        }
        drop(started);
        let mut threads = Vec::new();
        for _ in 0..4 {
            let on = starts.recv().await.unwrap();
            assert!(on.starts_with("api-shield-worker-"), "{on}");
            threads.push(on);
        }
        threads.sort();
        threads.dedup();
        assert_eq!(threads.len(), 2, "both workers serve");
        assert_eq!(dispatcher.open(), [2, 2]);
        // Connections are handed out in turn while the counts tie: the first and third went to
        // worker 0. They end; the next connection goes there.
        let mut runs: Vec<Option<_>> = runs.into_iter().map(Some).collect();
        let mut ends: Vec<Option<_>> = ends.into_iter().map(Some).collect();
        for i in [0, 2] {
            drop(ends[i].take());
            runs[i].take().unwrap().await.unwrap();
        }
        assert_eq!(dispatcher.open(), [0, 2]);
        let (release, released) = oneshot::channel::<()>();
        let (told, on) = oneshot::channel();
        let fifth = dispatcher.spawn(move || async move {
            told.send(thread_name()).unwrap();
            let _ = released.await;
        });
        assert_eq!(on.await.unwrap(), "api-shield-worker-0");
        assert_eq!(dispatcher.open(), [1, 2]);
        drop((release, ends));
        fifth.await.unwrap();
        for run in runs.into_iter().flatten() {
            run.await.unwrap();
        }
        assert_eq!(dispatcher.open(), [0, 0]);
    }

    #[tokio::test]
    async fn work_that_outlives_its_connection_keeps_it_counted() {
        assert!(hold_open().is_none(), "not a worker");
        let workers = Workers::start(1).unwrap();
        let dispatcher = workers.dispatcher();
        let (end, ended) = oneshot::channel::<()>();
        let (told, spawned) = oneshot::channel();
        dispatcher
            .spawn(move || async move {
                let open = hold_open().expect("on a worker");
                let tunnel = tokio::spawn(async move {
                    let _open = open;
                    let _ = ended.await;
                });
                told.send(tunnel).unwrap();
            })
            .await
            .unwrap();
        // The connection's task ended; the tunnel it left still counts.
        assert_eq!(dispatcher.open(), [1]);
        drop(end);
        spawned.await.unwrap().await.unwrap();
        assert_eq!(dispatcher.open(), [0]);
    }

    #[tokio::test]
    async fn stopped_workers_cancel_what_still_runs_on_them() {
        assert_eq!(current(), 0, "not a worker");
        let workers = Workers::start(2).unwrap();
        let dispatcher = workers.dispatcher();
        let (_never, never) = oneshot::channel::<()>();
        let (held, mut dropped) = oneshot::channel::<()>();
        let (told, running) = oneshot::channel();
        let run = dispatcher.spawn(move || async move {
            let _held = held;
            told.send(()).unwrap();
            let _ = never.await;
        });
        running.await.unwrap();
        workers.stop().await;
        // The task was dropped with its runtime before the stop returned: what it held is
        // gone, and so is its count.
        assert_eq!(
            dropped.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        );
        assert!(run.await.unwrap_err().is_cancelled());
        assert_eq!(dispatcher.open(), [0, 0]);
    }
}
