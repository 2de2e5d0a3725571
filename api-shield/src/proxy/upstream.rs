//! Named upstreams: a pool of keep-alive connections each (`pool`), plain HTTP or TLS
//! (validated against a configured CA or the system roots), with connect and response timeouts.

pub(crate) mod pool;

use std::{future::Future, sync::Arc, time::Duration};

use http::{header, HeaderValue, Request, Response};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::UpstreamConfig;
use crate::proxy::{
    connection::tls::{load_roots, TlsError},
    request::problem::Body,
    upstream::pool::{Pool, PoolError, PooledBody},
};

/// How long an idle keep-alive connection to an upstream stays open.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);

/// One upstream service.
#[derive(Debug)]
pub(crate) struct Upstream {
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
    /// From config (its URL typed when the config was read).
    pub(crate) fn new(config: &UpstreamConfig) -> Result<Upstream, TlsError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let plain = !config.url.https;
        let with_roots = |roots| -> Result<_, TlsError> {
            Ok(HttpsConnectorBuilder::new().with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|source| TlsError::Settings { source })?
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            ))
        };
        let builder = match &config.ca {
            Some(path) => with_roots(load_roots(path)?)?,
            // A plain-HTTP upstream never makes a TLS connection: it needs no roots, and a
            // host without a system CA bundle (a minimal image) must still be able to run it.
            None if plain => with_roots(rustls::RootCertStore::empty())?,
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|source| TlsError::SystemRoots { source })?,
        };
        let connector = builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Ok(Upstream {
            name: config.name.clone(),
            pool: Pool::new(connector, config.url.base.clone(), IDLE_TIMEOUT),
            host: config.url.host.clone(),
            response_timeout: config.response_timeout,
            latency: crate::telemetry::metrics()
                .upstream_latency
                .with_label_values(&[config.name.as_str()]),
        })
    }

    /// Sends `request`, whose URI is the path and query to ask for, to this upstream (with
    /// this upstream's `Host` when the request has none).
    pub(crate) fn send(
        &self,
        mut request: Box<Request<Body>>,
    ) -> impl Future<Output = Result<Response<PooledBody>, PoolError>> + '_ {
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, self.host.clone());
        }
        self.pool.send(request)
    }
}

/// The origin-form URI (`/path?query`) of a request to an upstream: the normalised `path`, and
/// the query of `uri`, or `rewritten_query` when a policy rewrote it; an empty query is dropped.
/// When that is exactly the client's target (the usual case), its bytes are shared, not copied.
pub(crate) fn origin_form(
    uri: &http::Uri,
    path: &str,
    rewritten_query: Option<&str>,
) -> Result<http::Uri, http::Error> {
    if rewritten_query.is_none() {
        if let Some(target) = uri.path_and_query() {
            let shared = http::Uri::from(target.clone());
            // A target with no path of its own is rebuilt: only a fragment after an authority
            // (`shared.path()` is then empty, though `target.path()` says `/`) or only a query
            // (`?x=1`, which would be sent as it is).
            if shared.path() == path
                && target.as_str().starts_with('/')
                && target.query() != Some("")
            {
                return Ok(shared);
            }
        }
    }
    let target = match rewritten_query.or(uri.query()).filter(|q| !q.is_empty()) {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    http::Uri::builder().path_and_query(target).build()
}

#[cfg(test)]
mod tests {
    use http::Uri;

    use super::origin_form;

    fn target(uri: &str, path: &str, rewritten_query: Option<&str>) -> String {
        let uri: Uri = uri.parse().unwrap();
        origin_form(&uri, path, rewritten_query)
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_target_is_the_normalised_path_with_the_query_in_origin_form() {
        assert_eq!(target("/a/b?x=1", "/a/b", None), "/a/b?x=1");
        assert_eq!(target("/a/./b//c?x=1", "/a/b/c", None), "/a/b/c?x=1");
        assert_eq!(target("https://h.example/a?x=1", "/a", None), "/a?x=1");
        assert_eq!(target("/a?", "/a", None), "/a");
        assert_eq!(target("/a/../b?", "/b", None), "/b");
        assert_eq!(target("/a?key=s&x=1", "/a", Some("x=1")), "/a?x=1");
        assert_eq!(target("/a?key=s", "/a", Some("")), "/a");
        // Targets with no path of their own get the normalised one, never an empty target.
        assert_eq!(target("https://h.example#x", "/", None), "/");
        assert_eq!(target("https://h.example?x=1", "/", None), "/?x=1");
        let bare: Uri = "https://h.example?x=1".parse().unwrap();
        assert_eq!(
            origin_form(&bare, "/", None)
                .unwrap()
                .path_and_query()
                .unwrap()
                .as_str(),
            "/?x=1"
        );
    }

    #[test]
    fn an_unchanged_target_shares_the_clients_bytes() {
        let uri: Uri = "/api/v1/items?page=2".parse().unwrap();
        let sent = origin_form(&uri, "/api/v1/items", None).unwrap();
        assert_eq!(sent, uri);
        assert_eq!(sent.path().as_ptr(), uri.path().as_ptr());
        let rebuilt = origin_form(&uri, "/api/v1/items/", None).unwrap();
        assert_ne!(rebuilt.path().as_ptr(), uri.path().as_ptr());
    }
}
