//! The idle timeout of client connections: a connection on which no byte moves either way for
//! `proxy.idle_timeout` is closed. That one rule ends idle keep-alive connections (HTTP/1.1
//! and HTTP/2 alike), connections opened and abandoned after the handshake, and clients that
//! stop reading a response (their writes stay pending, so nothing moves), like nginx's
//! `keepalive_timeout` and `send_timeout`. A client waiting for its answer is never idle for
//! longer than `proxy.request_timeout`, which the config keeps shorter.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// When bytes last moved on a connection.
#[derive(Debug, Clone)]
pub struct LastActivity {
    since: Instant,
    /// Milliseconds after `since`.
    at_ms: Arc<AtomicU64>,
}

impl LastActivity {
    fn new() -> LastActivity {
        LastActivity {
            since: Instant::now(),
            at_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.since + Duration::from_millis(self.at_ms.load(Ordering::Relaxed))
    }

    /// Completes once nothing has moved for `timeout`.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let deadline = self.last() + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records when bytes move through it.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: LastActivity,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: S) -> (Tracked<S>, LastActivity) {
        let activity = LastActivity::new();
        (
            Tracked {
                inner,
                activity: activity.clone(),
            },
            activity,
        )
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_quiet_timeout_and_traffic_pushes_it_back() {
        let (near, mut far) = tokio::io::duplex(64);
        let (mut tracked, activity) = Tracked::new(near);
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        tokio::time::advance(Duration::from_secs(6)).await;
        far.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tracked.read_exact(&mut buf).await.unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        tracked.write_all(b"pong").await.unwrap();
        activity.expired(timeout).await;
        // The last byte moved at 12 s: the quiet period ends at 22 s.
        assert_eq!(start.elapsed().as_secs(), 22);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_goes_idle() {
        let (near, _far) = tokio::io::duplex(8);
        let (mut tracked, activity) = Tracked::new(near);
        let start = Instant::now();
        let stalled = async {
            // 8 bytes fit; the rest stays pending because the peer never reads.
            let _ = tracked.write_all(&[0u8; 64]).await;
        };
        tokio::select! {
            () = stalled => panic!("a write to a peer that never reads completed"),
            () = activity.expired(Duration::from_secs(5)) => {}
        }
        assert_eq!(start.elapsed().as_secs(), 5);
    }
}
