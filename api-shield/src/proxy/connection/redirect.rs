//! The plain-HTTP listener beside an HTTPS one: every request gets a 308 to HTTPS (for a host
//! the HTTPS listener serves), under the same connection limits and timeouts.

use std::{convert::Infallible, sync::Arc};

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::server::{admit, parse_error_answer, Live};
use crate::proxy::{
    connection::conn_limit::ConnectionLimiter,
    connection::drain::Watcher,
    connection::head_timer::HeadDeadline,
    connection::idle::Tracked,
    connection::parse_errors::ParseErrors,
    connection::serve_http,
    connection::tls::Certificates,
    request::problem::{self, full, Body},
    request::routing::host_without_port,
};
use crate::{
    accept::{self, AcceptErrors},
    refusal::{Denial, Refusal},
};

/// Where a redirect listener sends its clients.
pub(super) struct RedirectTarget {
    /// The HTTPS listener's port.
    pub(super) https_port: u16,
    /// The HTTPS listener's certificates: the names it serves.
    pub(super) certificates: Arc<Certificates>,
    /// Where a request for a name it does not serve goes (else it gets 400).
    pub(super) canonical: Option<String>,
}

pub(super) async fn serve_redirect(
    tcp: TcpListener,
    target: Arc<RedirectTarget>,
    live: Arc<Live>,
    limiter: Arc<ConnectionLimiter>,
    mut watcher: Watcher,
) {
    let mut errors = AcceptErrors::new("redirect");
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept::next(&tcp, &mut errors) => accepted,
            () = watcher.stopping() => return,
        };
        let Some(permit) = admit(&limiter, peer) else {
            continue;
        };
        let settings = live.settings.load_full();
        let answer = parse_error_answer(&live, peer, false);
        let mut eviction = live.evictions.watch();
        let (target, live_for_service) = (Arc::clone(&target), Arc::clone(&live));
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request: Request<Incoming>| {
                let proxy = live_for_service.proxy.load_full();
                let mut response = redirect(&request, &target, &proxy);
                proxy
                    .response_headers()
                    .apply(response.headers_mut(), false);
                async move { Ok::<_, Infallible>(response) }
            });
            let stream = ParseErrors::new(stream, answer);
            let (stream, activity) = Tracked::new(stream);
            let head = HeadDeadline::new();
            let builder = serve_http::http1_builder(&settings, head.timer());
            tokio::select! {
                _ = builder.serve_connection(TokioIo::new(stream), service) => {}
                () = activity.expired(settings.idle_timeout) => {
                    crate::telemetry::metrics().connections.idle_closed.inc();
                }
                () = head.overdue(settings.header_timeout) => {
                    tracing::debug!(%peer, "connection closed: no request head within the header timeout");
                }
                () = eviction.banned(peer.ip()) => {
                    tracing::debug!(%peer, "connection closed: its client was banned");
                }
            }
        });
    }
}

/// The 308 to the HTTPS listener for a host it serves (a name its certificates are valid for,
/// or one a route's host pattern names), to `canonical_host` for any other, else 400: a
/// client-chosen `Host` never becomes a redirect to a site of the client's choosing.
fn redirect(
    request: &Request<Incoming>,
    target: &RedirectTarget,
    proxy: &crate::proxy::request::handler::Proxy,
) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_without_port)
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']));
    let Some(host) = host else {
        return problem::render(
            &Refusal::new(Denial::BadRequest).detail("a Host header is required"),
            None,
        );
    };
    let served = target.certificates.serve_name(host) || proxy.routes_host(host);
    let host = match (served, target.canonical.as_deref()) {
        (true, _) => host,
        (false, Some(canonical)) => canonical,
        (false, None) => {
            return problem::render(
                &Refusal::new(Denial::BadRequest).detail("this listener does not serve that host"),
                None,
            )
        }
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let port = if target.https_port == 443 {
        String::new()
    } else {
        format!(":{}", target.https_port)
    };
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{path}");
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}
