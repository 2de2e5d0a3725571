//! The admin listener (loopback by default): `/metrics` (Prometheus text format), `/healthz`
//! (the process answers) and `/readyz` (listeners bound and the fast path attached; not while
//! stopping). Plain HTTP/1.1; anything else is 404.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinHandle};

use super::metrics;

/// Whether the daemon is ready to serve.
#[derive(Debug, Default)]
pub(crate) struct Readiness(AtomicBool);

impl Readiness {
    /// Marks it ready or not.
    pub(crate) fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Binds the admin listener and serves it until the task is aborted.
pub(crate) async fn start(
    bind: SocketAddr,
    readiness: Arc<Readiness>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(bind).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut errors = crate::accept::AcceptErrors::new("admin");
        loop {
            let (stream, _) = crate::accept::next(&listener, &mut errors).await;
            let readiness = Arc::clone(&readiness);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let readiness = Arc::clone(&readiness);
                    async move { Ok::<_, Infallible>(answer(&request, &readiness)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn answer(request: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&http::Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            Bytes::from(metrics().render()),
        ),
        (&http::Method::GET, "/healthz") => (StatusCode::OK, "text/plain", Bytes::from("ok\n")),
        (&http::Method::GET, "/readyz") if readiness.get() => {
            (StatusCode::OK, "text/plain", Bytes::from("ready\n"))
        }
        (&http::Method::GET, "/readyz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from("not ready\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from("not found\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
