//! Named upstreams: a pooled keep-alive client each, plain HTTP or TLS (validated against a
//! configured CA or the system roots), with connect and response timeouts.

use std::time::Duration;

use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

use super::{
    problem::Body,
    tls::{load_roots, TlsError},
};
use crate::config::UpstreamConfig;

/// One upstream service.
#[derive(Debug)]
pub struct Upstream {
    /// Its name.
    pub name: String,
    /// `scheme://host:port`.
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
    /// Pooled client.
    pub client: Client<HttpsConnector<HttpConnector>, Body>,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_mins(1))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            name: config.name.clone(),
            scheme: uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority: uri.authority().cloned().expect("validated upstream URL"),
            client,
            response_timeout: config.response_timeout,
        })
    }

    /// The URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Result<http::Uri, http::Error> {
        http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }
}
