//! The idle timeout of client connections: a connection on which no byte moves either way for
//! `proxy.idle_timeout` is closed (within an eighth of the timeout after that). That one rule ends idle keep-alive connections (HTTP/1.1
//! and HTTP/2 alike), connections opened and abandoned after the handshake, and clients that
//! stop reading a response (their writes stay pending, so nothing moves), like nginx's
//! `keepalive_timeout` and `send_timeout`. A client waiting for its answer is never idle for
//! longer than `proxy.request_timeout`, which the config keeps shorter.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Instant,
};

/// How many times per idle timeout the watchdog looks whether bytes moved.
const LOOKS_PER_TIMEOUT: u32 = 8;

/// Whether bytes moved on a connection since its watchdog last looked. Moving bytes only sets
/// a flag (no clock read per read or write); the watchdog keeps the time.
#[derive(Debug, Clone)]
pub(crate) struct LastActivity {
    moved: Arc<AtomicBool>,
}

impl LastActivity {
    fn new() -> LastActivity {
        LastActivity {
            moved: Arc::new(AtomicBool::new(false)),
        }
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `timeout`. It looks every eighth of `timeout`, so
    /// it completes between `timeout` and `timeout` and an eighth after the last byte moved
    /// (never sooner).
    pub(crate) async fn expired(&self, timeout: Duration) {
        let step = (timeout / LOOKS_PER_TIMEOUT).max(Duration::from_millis(1));
        let mut quiet_since = Instant::now();
        let sleep = tokio::time::sleep_until(quiet_since + step);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let now = Instant::now();
            if self.moved.swap(false, Ordering::Relaxed) {
                // Something moved since the last look, at the latest now.
                quiet_since = now;
            } else if now >= quiet_since + timeout {
                return;
            }
            sleep
                .as_mut()
                .reset((quiet_since + timeout).min(now + step));
        }
    }
}

/// A stream that records when bytes move through it.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: LastActivity,
}

impl<S> Tracked<S> {
    /// Wraps `inner`; the clock starts now.
    pub(crate) fn new(inner: S) -> (Tracked<S>, LastActivity) {
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

    /// The watchdog's lateness at most: one look.
    fn late_at_most(timeout: Duration) -> Duration {
        timeout / LOOKS_PER_TIMEOUT
    }

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_quiet_timeout_and_traffic_pushes_it_back() {
        let (near, mut far) = tokio::io::duplex(64);
        let (mut tracked, activity) = Tracked::new(near);
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        let expired = activity.expired(timeout);
        tokio::pin!(expired);
        let traffic = async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            far.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tracked.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_secs(6)).await;
            tracked.write_all(b"pong").await.unwrap();
        };
        tokio::select! {
            () = &mut expired => panic!("expired while bytes were moving"),
            () = traffic => {}
        }
        expired.await;
        // The last byte moved at 12 s: the quiet period ends at 22 s.
        let quiet_end = Duration::from_secs(22);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= quiet_end && elapsed <= quiet_end + late_at_most(timeout),
            "expired at {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_on_which_nothing_moves_expires_at_the_timeout() {
        let (near, _far) = tokio::io::duplex(8);
        let (_tracked, activity) = Tracked::new(near);
        let start = Instant::now();
        activity.expired(Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
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
        let elapsed = start.elapsed();
        let timeout = Duration::from_secs(5);
        assert!(
            elapsed >= timeout && elapsed <= timeout + late_at_most(timeout),
            "expired at {elapsed:?}"
        );
    }
}
