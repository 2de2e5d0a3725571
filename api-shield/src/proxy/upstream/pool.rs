//! The keep-alive connection pool of one upstream: HTTP/1.1 connections made by the upstream's
//! connector (TCP with its connect timeout, TLS when the URL says `https`), each driven by a
//! task of its own, handed out most recently used first, and taken back once the response
//! body has been read to its end. A connection idle for longer than the idle timeout is never
//! handed out again, and a sweeper task, which runs only while the pool holds some, closes
//! such connections within half a timeout more. With several workers
//! (`proxy::connection::workers`) each worker has idle connections of its own: a connection is
//! driven by a task on the worker that made it, and lent only to requests on that worker, so
//! an exchange never wakes another thread.
//!
//! Written here rather than taken from hyper-util's legacy client, which the proxy used
//! before: that client hashes a pool key on every checkout and return and spawns a task per
//! request to wait for the connection to become idle again, 3-5 % of the proxy's CPU under
//! bench-proxy. Here a connection whose response is complete is nearly always idle already
//! and goes straight back; only when it is not is a task spawned to wait for it.

use std::{
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, MissedTickBehavior};

use bytes::Bytes;
use hyper::{
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    client::conn::http1::{self, SendRequest},
    Request, Response,
};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::proxy::request::problem::Body;

/// How connections to the upstream are made: TCP, then TLS for `https`.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// Idle connections kept per upstream and worker; one falling idle beyond this is closed.
pub(crate) const MAX_IDLE: usize = 512;

/// Idle lists per pool: one per worker (numbered from 1), as many as `proxy.workers` may be,
/// and one for the daemon's own thread (0, where connections run with one worker).
const SHARDS: usize = crate::config::MAX_WORKERS + 1;

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// No connection could be made (refused, unreachable, connect timeout, TLS failure).
    #[error("connecting: {0}")]
    Connect(Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP/1.1 connection could not be set up.
    #[error("HTTP handshake: {0}")]
    Handshake(#[source] hyper::Error),
    /// The exchange failed once the request was sent (or could not be sent).
    #[error("request: {0}")]
    Request(#[source] hyper::Error),
}

/// The pool of one upstream.
pub(crate) struct Pool {
    connector: Connector,
    /// `scheme://authority/`, what the connector connects to.
    target: http::Uri,
    idle_timeout: Duration,
    /// The idle connections of each worker.
    shards: Box<[Shard]>,
}

/// One worker's idle connections, on a cache line of its own (workers lock only theirs).
#[repr(align(128))]
struct Shard(Mutex<Idle>);

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("idle", &self.idle_count())
            .finish_non_exhaustive()
    }
}

/// The idle connections.
struct Idle {
    /// Each with the time it fell idle; the most recently used last.
    senders: Vec<(SendRequest<Body>, Instant)>,
    /// Whether a sweeper task is running.
    sweeping: bool,
}

impl Pool {
    /// An empty pool of connections to `target` (`scheme://authority`).
    pub(crate) fn new(
        connector: Connector,
        target: http::Uri,
        idle_timeout: Duration,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            target,
            idle_timeout,
            shards: (0..SHARDS)
                .map(|_| {
                    Shard(Mutex::new(Idle {
                        senders: Vec::new(),
                        sweeping: false,
                    }))
                })
                .collect(),
        })
    }

    /// Sends `request` (origin-form URI, `Host` set) on an idle connection, or on a new one
    /// when none is idle. A request that an idle connection refused before sending any of it
    /// (the upstream closed it meanwhile) goes to the next one.
    ///
    /// The request comes boxed, and leaves its box only for hyper: by value (240 bytes) it was
    /// copied about ten times on its way through these futures, which showed in the proxy
    /// benchmark.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Box<Request<Body>>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let shard = crate::proxy::connection::workers::current() % SHARDS;
        while let Some(mut sender) = self.checkout(shard) {
            match sender.try_send_request(*request).await {
                Ok(response) => return Ok(self.lease(response, sender, shard)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => *request = unsent,
                    None => return Err(PoolError::Request(error.into_error())),
                },
            }
        }
        // Boxed: connecting is rare once the pool is warm, and inline its state would make
        // every request's future (moved whole by the HTTP server) bigger by a kilobyte.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender
            .send_request(*request)
            .await
            .map_err(PoolError::Request)?;
        Ok(self.lease(response, sender, shard))
    }

    /// Idle connections held now, all workers'.
    pub(crate) fn idle_count(&self) -> usize {
        (0..SHARDS)
            .map(|shard| self.lock(shard).senders.len())
            .sum()
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Idle> {
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used idle connection that can take a request and has not been idle
    /// for the idle timeout; closed and expired ones are dropped. (Idle connections are kept
    /// youngest last: once one has expired, so have all those below it.)
    fn checkout(&self, shard: usize) -> Option<SendRequest<Body>> {
        let mut idle = self.lock(shard);
        let now = Instant::now();
        while let Some((sender, since)) = idle.senders.pop() {
            if now.duration_since(since) >= self.idle_timeout {
                idle.senders.clear();
                return None;
            }
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Body>, PoolError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut connector, cx))
            .await
            .map_err(PoolError::Connect)?;
        let stream = tower_service::Service::call(&mut connector, self.target.clone())
            .await
            .map_err(PoolError::Connect)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn lease(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: SendRequest<Body>,
        shard: usize,
    ) -> Response<PooledBody> {
        response.map(|inner| PooledBody {
            inner,
            lease: Some(Lease {
                sender,
                pool: Arc::clone(self),
                shard,
            }),
        })
    }

    /// Takes an idle connection back into `shard`, its worker's (closes it when that is full).
    fn put(self: &Arc<Self>, sender: SendRequest<Body>, shard: usize) {
        let mut idle = self.lock(shard);
        if idle.senders.len() >= MAX_IDLE {
            return;
        }
        idle.senders.push((sender, Instant::now()));
        if !idle.sweeping {
            idle.sweeping = true;
            drop(idle);
            self.start_sweeper(shard);
        }
    }

    /// Every half idle timeout, closes the connections idle for the idle timeout or longer
    /// (so within one and a half timeouts); stops when the pool is empty or gone.
    fn start_sweeper(self: &Arc<Self>, shard: usize) {
        let pool = Arc::downgrade(self);
        let period = (self.idle_timeout / 2).max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                if !pool.sweep(shard) {
                    return;
                }
            }
        });
    }

    /// One sweep; false when no idle connection is left (the sweeper then stops).
    fn sweep(&self, shard: usize) -> bool {
        let mut idle = self.lock(shard);
        let now = Instant::now();
        let timeout = self.idle_timeout;
        idle.senders
            .retain(|(sender, since)| now.duration_since(*since) < timeout && !sender.is_closed());
        idle.sweeping = !idle.senders.is_empty();
        idle.sweeping
    }
}

/// A connection lent out for one exchange.
struct Lease {
    sender: SendRequest<Body>,
    pool: Arc<Pool>,
    /// The worker whose idle list it returns to.
    shard: usize,
}

impl Lease {
    /// Gives the connection back, at once when it can take the next request (the usual case:
    /// its task finished the response before the body was read), or once it can.
    fn release(self) {
        let Lease {
            mut sender,
            pool,
            shard,
        } = self;
        if sender.is_ready() {
            pool.put(sender, shard);
        } else if !sender.is_closed() {
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender, shard);
                }
            });
        }
    }
}

/// A response body from a pooled connection: the connection goes back to the pool when the
/// body has been read to its end, and is closed when the body is dropped before (its unread
/// bytes would otherwise precede the next response).
pub(crate) struct PooledBody {
    inner: Incoming,
    lease: Option<Lease>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("leased", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(data)) if !data.is_trailers() => {}
            Some(Err(_)) => this.lease = None,
            // The end, or the trailers, which come last (the server drops the body after them
            // without polling it again).
            _ => {
                if let Some(lease) = this.lease.take() {
                    lease.release();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // The server stops polling a body once it reports its end, so a complete body is
        // usually released here.
        if let Some(lease) = self.lease.take() {
            if self.inner.is_end_stream() {
                lease.release();
            }
        }
    }
}

#[cfg(test)]
mod tests;
