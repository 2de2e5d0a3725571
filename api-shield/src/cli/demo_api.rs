//! `api-shield demo-api`: a small JSON API to put the shield in front of, for trying it out
//! (`cargo xtask run` starts it beside the daemon). Not a production component.

use std::{convert::Infallible, net::SocketAddr};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Address to listen on (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub bind: SocketAddr,
}

/// Serves until interrupted.
pub(super) fn run(args: &Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.bind)
            .await
            .with_context(|| format!("cannot listen on {}", args.bind))?;
        eprintln!("demo API listening on http://{}", args.bind);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let forwarded_for = request
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    // What the shield tells the upstream about a caller is read from the headers it forwards.
    let key_id = request
        .headers()
        .get("x-api-key-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let (status, value) = match (method.as_str(), path.as_str()) {
        ("GET", "/health") => (StatusCode::OK, json!({ "status": "ok" })),
        ("GET", p) if p.starts_with("/api/v1/users/") => {
            let id = &p["/api/v1/users/".len()..];
            (
                StatusCode::OK,
                json!({ "id": id, "name": format!("user {id}"), "seen_from": forwarded_for }),
            )
        }
        ("GET", "/api/v1/admin/stats") => {
            (StatusCode::OK, json!({ "users": 42, "key_id": key_id }))
        }
        ("POST", "/api/v1/users") => (
            StatusCode::CREATED,
            json!({ "created": true, "bytes": body.len() }),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            json!({ "error": "no such resource in the demo API" }),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    response
        .headers_mut()
        .insert(header::SERVER, "demo-api/1.0".parse().expect("static"));
    Ok(response)
}
