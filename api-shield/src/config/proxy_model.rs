//! The L7 part of the configuration: listeners, upstreams, routes and proxy-wide settings, with
//! their defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{
    model::duration,
    typed::{socket_addr, CipherSuite, TlsVersion, UpstreamUrl},
};
use crate::pattern::{HostPattern, OriginPattern, PathPattern};

/// A `[[listeners]]` entry: an HTTPS listener, optionally with a plain-HTTP listener that only
/// redirects to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name for logs (default `listener-N`).
    #[serde(default)]
    pub name: Option<String>,
    /// Address and port, e.g. `"0.0.0.0:8443"` or `"[::]:8443"`.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Certificates and TLS settings.
    pub tls: TlsConfig,
    /// A plain-HTTP listener answering every request with a 308 to this one.
    #[serde(default)]
    pub redirect: Option<RedirectConfig>,
    /// Connections start with a PROXY protocol header (v1 or v2) naming the client; accepted
    /// only from `proxy.trusted_proxies`, and required from them.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// `[listeners.tls]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Generate a self-signed certificate at start (development only; logged loudly).
    pub adhoc: bool,
    /// Host names of the adhoc certificate (default `localhost`, `127.0.0.1`, `::1`).
    pub adhoc_names: Vec<String>,
    /// PEM certificate chains and keys; the first is the default, others are chosen by SNI
    /// against their subject alternative names.
    pub certificates: Vec<CertificateConfig>,
    /// TLS versions: a subset of `["1.2", "1.3"]` (default both).
    pub versions: Vec<TlsVersion>,
    /// AEAD cipher suites (IANA names), a subset of what the library offers (default all).
    pub cipher_suites: Vec<CipherSuite>,
    /// PEM CA(s) whose client certificates this listener requires (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: also serve clients that present no certificate.
    pub client_auth_optional: bool,
}

/// One certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; RSA, ECDSA or Ed25519).
    pub key: PathBuf,
}

/// `[listeners.redirect]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Address and port of the plain-HTTP listener.
    #[serde(deserialize_with = "socket_addr")]
    pub bind: SocketAddr,
    /// Where a request naming a host this listener does not serve (no certificate and no
    /// route names it) is sent; without it, such a request gets 400.
    #[serde(default)]
    pub canonical_host: Option<String>,
}

/// An `[[upstreams]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name routes refer to.
    pub name: String,
    /// Base URL, e.g. `"http://127.0.0.1:9000"` or `"https://api.internal:8443"`.
    pub url: UpstreamUrl,
    /// PEM CA(s) to validate an `https` upstream against (default: the system roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Time to establish a connection.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time for the upstream to answer with a response head.
    #[serde(default = "default_response_timeout", deserialize_with = "duration")]
    pub response_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_response_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name for logs and metrics.
    pub name: String,
    /// Host to match (`api.example.com`, `*.example.com`), or any.
    #[serde(default)]
    pub host: Option<HostPattern>,
    /// `/exact`, `/prefix/*` or `/template/{param}`.
    pub path: PathPattern,
    /// Methods accepted (default any).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// The upstream it forwards to.
    pub upstream: String,
    /// CORS for this route.
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    /// Who may call it (bearer tokens, API keys, scopes).
    #[serde(default)]
    pub auth: Option<super::RouteAuthConfig>,
    /// Requests per client over time.
    #[serde(default)]
    pub rate_limit: Option<super::RateLimitConfig>,
    /// What requests must look like.
    #[serde(default)]
    pub validate: Option<super::ValidateConfig>,
    /// Deprecation and sunset of this route.
    #[serde(default)]
    pub deprecation: Option<super::DeprecationConfig>,
}

/// `[routes.cors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins: exact (`https://app.example.com`), subdomains
    /// (`https://*.example.com`) or `*` (not with credentials).
    pub origins: Vec<OriginPattern>,
    /// Methods allowed in preflights (default: the route's, or GET, HEAD, POST).
    pub methods: Vec<String>,
    /// Request headers allowed in preflights (case-insensitive).
    pub headers: Vec<String>,
    /// Response headers exposed to scripts.
    pub expose: Vec<String>,
    /// Allow credentials (cookies, authorization).
    pub credentials: bool,
    /// How long browsers may cache a preflight, e.g. `"10m"`.
    #[serde(deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// The most `proxy.workers` may be.
pub const MAX_WORKERS: usize = 64;

/// `[proxy]`: settings for every listener and route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Longest a client may take to send a request head (slowloris).
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Longest a whole exchange may take until the response head: receiving the request (body
    /// included) and the upstream's answer. Past it: 408.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Longest a client may leave between two pieces of its request body (nginx's
    /// `client_body_timeout`); past it, 408 and the exchange is the client's fault.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// A client connection on which no byte moves either way for this long is closed: idle
    /// keep-alive, abandoned connections, clients that stop reading. Longer than
    /// `request_timeout`, so a client waiting for its answer is never cut.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Largest request body forwarded (bytes); larger gets 413 before the upstream sees it.
    pub max_body_bytes: u64,
    /// Largest request head (bytes).
    pub max_header_bytes: usize,
    /// Most request headers (HTTP/1.1; HTTP/2 is bounded by `max_header_bytes`).
    pub max_headers: usize,
    /// Most connections open at once from one client address (0: no limit).
    pub max_connections_per_ip: usize,
    /// Most client connections open at once in all (0: no limit); past it new ones are closed
    /// at accept, keeping file descriptors for upstreams and the rest of the daemon.
    pub max_connections: usize,
    /// Most HTTP/2 streams open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Peers (CIDRs) trusted to say who the client is in `X-Forwarded-For`.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where requests that match no route go: an upstream name, or none for 404.
    pub default_upstream: Option<String>,
    /// HSTS on HTTPS responses.
    pub hsts: HstsConfig,
    /// Add the default security headers (nosniff, frame-ancestors, Referrer-Policy).
    pub security_headers: bool,
    /// Threads serving client connections (default 2): with 1, the daemon's own runtime serves
    /// them; with more, each is a single-threaded runtime of its own (`connection::workers`).
    pub workers: usize,
    /// On SIGTERM, how long open connections may take to finish their exchanges.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_mins(1),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections_per_ip: 256,
            max_connections: 10_000,
            max_concurrent_streams: 128,
            trusted_proxies: Vec::new(),
            default_upstream: None,
            hsts: HstsConfig::default(),
            security_headers: true,
            workers: 2,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// `[proxy.hsts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HstsConfig {
    /// Send `Strict-Transport-Security`.
    pub enabled: bool,
    /// `max-age`.
    #[serde(deserialize_with = "duration")]
    pub max_age: Duration,
    /// `includeSubDomains`.
    pub include_subdomains: bool,
    /// `preload`.
    pub preload: bool,
}

impl Default for HstsConfig {
    fn default() -> Self {
        HstsConfig {
            enabled: true,
            max_age: Duration::from_hours(365 * 24),
            include_subdomains: true,
            preload: false,
        }
    }
}
