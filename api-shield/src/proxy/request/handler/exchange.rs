//! The exchange with the upstream and the client's body: waiting for the upstream's answer on
//! the connection's response timer, reading a body whole within its limits, and deciding who
//! failed when an exchange fails (the client: 408 or a client abort; the upstream: 502, 504).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use tokio::time::Instant;

use super::{deadline_after, Connection};
use crate::{
    proxy::{
        request::{
            client_body::{BodyState, BodyWatch, ClientBody},
            problem::Body,
        },
        upstream::{pool::PooledBody, Upstream},
    },
    refusal::{Denial, Refusal},
};

/// Sends `outgoing` to `upstream` and waits for the answer's head, on the connection's response
/// timer; `watch` follows the client's body when it is streamed on. Who failed decides the
/// refusal: a body that stalled or a client gone is the client's (408, client abort), a
/// failure or a timeout of the upstream itself is the upstream's (502, 504).
pub(super) async fn ask(
    upstream: &Upstream,
    outgoing: Box<Request<Body>>,
    connection: &Connection,
    watch: Option<&BodyWatch>,
) -> Result<Response<PooledBody>, Refusal> {
    let asked = Instant::now();
    let metrics = crate::telemetry::metrics();
    let sent = upstream.send(outgoing);
    tokio::pin!(sent);
    let timed = connection
        .response_timer
        .run(deadline_after(asked, upstream.response_timeout), sent);
    let answer = match watch {
        // A body that stalls ends the exchange at once: the client's fault, 408.
        Some(watch) => tokio::select! {
            answer = timed => answer,
            () = watch.stalled() => return Err(client_failed(BodyState::Stalled)),
        },
        None => timed.await,
    };
    let body_state = watch.map(BodyWatch::state);
    match answer {
        Ok(Ok(response)) => {
            upstream.latency.observe(asked.elapsed().as_secs_f64());
            Ok(response)
        }
        // The client's body ended in an error (it went away): not the upstream's failure.
        Ok(Err(_)) if body_state == Some(BodyState::Gone) => Err(client_failed(BodyState::Gone)),
        // The upstream's clock ran out while it still waited for the client's body.
        Err(_) if body_state == Some(BodyState::Streaming) => {
            Err(client_failed(BodyState::Stalled))
        }
        Ok(Err(error)) => {
            tracing::warn!(upstream = %upstream.name, %error, "upstream request failed");
            metrics
                .upstream_errors
                .with_label_values(&[upstream.name.as_str(), "unavailable"])
                .inc();
            Err(Refusal::new(Denial::UpstreamUnavailable))
        }
        Err(_) => {
            metrics
                .upstream_errors
                .with_label_values(&[upstream.name.as_str(), "timeout"])
                .inc();
            Err(Refusal::new(Denial::UpstreamTimeout))
        }
    }
}

/// A whole body, up to `max_body` bytes (413 past it), with at most `gap` between its pieces.
pub(super) async fn read_body(
    body: Incoming,
    max_body: u64,
    gap: std::time::Duration,
) -> Result<Bytes, Refusal> {
    if body.size_hint().lower() > max_body {
        return Err(Refusal::new(Denial::PayloadTooLarge));
    }
    let (body, watch) = ClientBody::new(body, gap);
    let collected = tokio::select! {
        collected = Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).collect() => collected,
        () = watch.stalled() => return Err(client_failed(BodyState::Stalled)),
    };
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal::new(Denial::PayloadTooLarge))
        }
        Err(_) if watch.state() == BodyState::Gone => Err(client_failed(BodyState::Gone)),
        Err(_) => Err(Refusal::new(Denial::BadRequest)),
    }
}

/// The refusal of an exchange the client made fail: 408 for a body that stalled, a client
/// abort for one that ended in an error. Counted in `api_shield_client_errors_total`, never
/// against an upstream.
fn client_failed(state: BodyState) -> Refusal {
    let (kind, denial, detail) = match state {
        BodyState::Gone => (
            "aborted",
            Denial::ClientClosedRequest,
            "The client closed the request",
        ),
        _ => (
            "body_timeout",
            Denial::RequestTimeout,
            "The request body stopped arriving",
        ),
    };
    crate::telemetry::metrics()
        .client_errors
        .with_label_values(&[kind])
        .inc();
    tracing::debug!(kind, "exchange ended by the client");
    Refusal::new(denial).detail(detail)
}
