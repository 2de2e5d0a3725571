//! Named upstreams: a pooled keep-alive HTTP client each, with connect and response timeouts.

use std::time::Duration;

use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

use super::problem::Body;
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
    pub client: Client<HttpConnector, Body>,
    /// Time allowed for the response head.
    pub response_timeout: Duration,
}

impl Upstream {
    /// From validated config (the URL was checked by config validation).
    pub fn new(config: &UpstreamConfig) -> Upstream {
        let uri: http::Uri = config.url.parse().expect("validated upstream URL");
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_mins(1))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Upstream {
            name: config.name.clone(),
            scheme: uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            authority: uri.authority().cloned().expect("validated upstream URL"),
            client,
            response_timeout: config.response_timeout,
        }
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
