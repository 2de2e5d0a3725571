//! A JWK set fetched from a URL: at start and every `jwks_refresh` in the background, and once
//! more when a token names an unknown `kid` (at most once per `jwks_refetch_cooldown`). A fetch
//! that fails or yields no usable key leaves the last good set in place.

use std::{sync::Mutex, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use super::{jwt::Issuer, jwt_keys};

/// Largest JWK set read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A JWK set URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Not a URL, or not https (http only to a loopback address).
    #[error("`{url}` must be an https:// URL (http:// only to a loopback address)")]
    Url {
        /// What was written.
        url: String,
    },
    /// The system's root certificates could not be loaded.
    #[error("cannot load the system root certificates: {source}")]
    Roots {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The fetch failed.
    #[error("fetching the JWK set failed: {0}")]
    Fetch(&'static str),
    /// The answer was not a usable JWK set.
    #[error("the JWK set is unusable: {source}")]
    Keys {
        /// Why.
        #[source]
        source: jwt_keys::KeyError,
    },
}

/// The fetching side of an issuer with a `jwks_url`.
pub struct Jwks {
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// Time between background fetches.
    pub refresh: Duration,
    cooldown: Duration,
    last_refetch: Mutex<Option<tokio::time::Instant>>,
    fetching: tokio::sync::Mutex<()>,
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// Checks the URL and builds the client.
    pub fn new(url: &str, refresh: Duration, cooldown: Duration) -> Result<Jwks, JwksError> {
        let bad = || JwksError::Url {
            url: url.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        let loopback = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => return Err(bad()),
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|source| JwksError::Roots { source })?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Jwks {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build(connector),
            refresh,
            cooldown,
            last_refetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Fetches attempted so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches the set and installs it in `issuer`; on failure the last good set stays.
    pub async fn fetch_into(&self, issuer: &Issuer) -> Result<usize, JwksError> {
        let result = self.try_fetch_into(issuer).await;
        crate::telemetry::metrics()
            .jwks_fetches
            .with_label_values(&[
                &*issuer.name,
                if result.is_ok() { "success" } else { "failure" },
            ])
            .inc();
        result
    }

    async fn try_fetch_into(&self, issuer: &Issuer) -> Result<usize, JwksError> {
        let _one_at_a_time = self.fetching.lock().await;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = tokio::time::timeout(FETCH_TIMEOUT, self.get())
            .await
            .map_err(|_| JwksError::Fetch("timed out"))??;
        let keys = jwt_keys::from_jwks(&body, issuer.algorithms(), false)
            .map_err(|source| JwksError::Keys { source })?;
        if keys.is_empty() {
            return Err(JwksError::Fetch(
                "no key in the set fits the issuer's algorithms",
            ));
        }
        let count = keys.len();
        issuer.install_fetched(keys);
        Ok(count)
    }

    async fn get(&self) -> Result<Bytes, JwksError> {
        let request = http::Request::get(self.url.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Empty::new())
            .map_err(|_| JwksError::Fetch("bad request"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| JwksError::Fetch("connection failed"))?;
        if !response.status().is_success() {
            return Err(JwksError::Fetch("the server answered with an error status"));
        }
        Ok(Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|_| JwksError::Fetch("the body could not be read or was too large"))?
            .to_bytes())
    }

    /// The fetch a token with an unknown `kid` may cause: none within the cooldown of the
    /// last one. True when a fetch happened and installed keys.
    pub async fn refetch(&self, issuer: &Issuer) -> bool {
        {
            let mut last = self
                .last_refetch
                .lock()
                .expect("the refetch lock is never poisoned");
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < self.cooldown) {
                return false;
            }
            *last = Some(now);
        }
        match self.fetch_into(issuer).await {
            Ok(count) => {
                tracing::info!(issuer = %issuer.name, keys = count, "JWK set fetched for an unknown kid");
                true
            }
            Err(error) => {
                tracing::warn!(issuer = %issuer.name, %error, "JWK set refetch failed; keeping the last good set");
                false
            }
        }
    }
}

/// Keeps an issuer's fetched keys fresh until the task is dropped.
pub async fn refresh_forever(issuer: std::sync::Arc<Issuer>) {
    let Some(jwks) = issuer.jwks() else { return };
    loop {
        match jwks.fetch_into(&issuer).await {
            Ok(count) => tracing::info!(issuer = %issuer.name, keys = count, "JWK set fetched"),
            Err(error) => {
                tracing::warn!(issuer = %issuer.name, %error, "JWK set fetch failed; keeping the last good set");
            }
        }
        tokio::time::sleep(jwks.refresh).await;
    }
}
