//! Named upstreams: a pool of keep-alive connections each (`upstream_pool`), plain HTTP or TLS
//! (validated against a configured CA or the system roots), with connect and response timeouts.

use std::{future::Future, sync::Arc, time::Duration};

use http::{header, HeaderValue, Request, Response};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use super::{
    problem::Body,
    tls::{load_roots, TlsError},
    upstream_pool::{Pool, PoolError, PooledBody},
};
use crate::config::UpstreamConfig;

/// How long an idle keep-alive connection to an upstream stays open.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);

/// One upstream service.
#[derive(Debug)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// Keep-alive connections.
    pool: Arc<Pool>,
    /// The `Host` a request without one is sent with: the URL's, without a default port.
    host: HeaderValue,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
    /// `api_shield_upstream_latency_seconds{upstream}`, resolved once.
    pub latency: prometheus::Histogram,
}

impl Upstream {
    /// From validated config (the URL was checked by config validation).
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, TlsError> {
        let uri: http::Uri = config.url.parse().expect("validated upstream URL");
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match &config.ca {
            Some(path) => HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|source| TlsError::Settings { source })?
                    .with_root_certificates(load_roots(path)?)
                    .with_no_client_auth(),
            ),
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|source| TlsError::SystemRoots { source })?,
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
        let authority = uri.authority().cloned().expect("validated upstream URL");
        let default_port = if scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        };
        // Host and port only: never user information the URL may carry.
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).expect("validated upstream URL");
        let target = http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .expect("validated upstream URL");
        Ok(Upstream {
            name: config.name.clone(),
            pool: Pool::new(connector, target, IDLE_TIMEOUT),
            host,
            response_timeout: config.response_timeout,
            latency: crate::telemetry::metrics()
                .upstream_latency
                .with_label_values(&[config.name.as_str()]),
        })
    }

    /// Sends `request`, whose URI is the path and query to ask for, to this upstream (with
    /// this upstream's `Host` when the request has none).
    pub fn send(
        &self,
        mut request: Request<Body>,
    ) -> impl Future<Output = Result<Response<PooledBody>, PoolError>> + '_ {
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, self.host.clone());
        }
        self.pool.send(request)
    }
}

/// The origin-form URI (`/path?query`) of a request to an upstream.
pub fn origin_form(path_and_query: &str) -> Result<http::Uri, http::Error> {
    http::Uri::builder().path_and_query(path_and_query).build()
}
