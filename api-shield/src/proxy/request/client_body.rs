//! The request body as the client sends it, on a clock of its own: a client that lets
//! `proxy.body_timeout` pass between two pieces of its body (nginx's `client_body_timeout`) has
//! stalled, and one whose body ends in an error (it closed the connection mid-body) has gone.
//! Either is the client's fault, and the exchange says so: 408 for a stall, a client abort
//! (499 in the access log) for a client gone, never an upstream error, and never a signal of
//! the upstream's health. An upstream still waiting for a body the client is slowly sending
//! when its response timeout passes is not blamed either.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::{sync::Notify, time::Sleep};

const STREAMING: u8 = 0;
const COMPLETE: u8 = 1;
const STALLED: u8 = 2;
const GONE: u8 = 3;

/// How a client's body is going, shared between the body (sent on to the upstream) and the
/// exchange that waits on the upstream.
#[derive(Debug, Default)]
pub(crate) struct BodyWatch {
    state: AtomicU8,
    stalled: Notify,
}

/// What became of a client's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyState {
    /// Still coming.
    Streaming,
    /// Read to its end.
    Complete,
    /// Nothing came for `body_timeout`.
    Stalled,
    /// It ended in an error: the client went away mid-body.
    Gone,
}

impl BodyWatch {
    /// The body's state now.
    pub(crate) fn state(&self) -> BodyState {
        match self.state.load(Ordering::Acquire) {
            STREAMING => BodyState::Streaming,
            COMPLETE => BodyState::Complete,
            STALLED => BodyState::Stalled,
            _ => BodyState::Gone,
        }
    }

    /// Resolves when the body stalls (never otherwise).
    pub(crate) async fn stalled(&self) {
        loop {
            let notified = self.stalled.notified();
            if self.state() == BodyState::Stalled {
                return;
            }
            notified.await;
        }
    }

    fn set(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        if state == STALLED {
            self.stalled.notify_waiters();
        }
    }
}

/// A client's request body with the gap between its pieces bounded.
pub(crate) struct ClientBody {
    inner: Incoming,
    gap: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    watch: Arc<BodyWatch>,
}

impl ClientBody {
    /// `inner`, stalled once `gap` passes with nothing new from the client.
    pub(crate) fn new(inner: Incoming, gap: Duration) -> (ClientBody, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch::default());
        (
            ClientBody {
                inner,
                gap,
                timer: None,
                watch: Arc::clone(&watch),
            },
            watch,
        )
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if this.watch.state() == BodyState::Stalled {
            // The exchange gives up on its own; nothing more is read.
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.watch.set(GONE);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.watch.set(COMPLETE);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let gap = this.gap;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.watch.set(STALLED);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
