//! The API policies part of the configuration: token issuers, API keys, and what each route
//! applies (auth, scopes, rate limit, input validation, deprecation), with their defaults.

use std::{collections::BTreeMap, fmt, path::PathBuf, time::Duration};

use serde::{de, Deserialize, Deserializer};

use super::model::duration;

/// An `[[issuers]]` entry: who may sign bearer tokens, with which keys and algorithms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Name routes refer to.
    pub name: String,
    /// The `iss` claim tokens must carry.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    pub audiences: Vec<String>,
    /// Accepted algorithms (`HS256`, `RS256`, `PS256`, `ES256`, `EdDSA`, ...). `none` never is.
    pub algorithms: Vec<String>,
    /// Tolerance for `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// PEM public keys (RSA, EC or Ed25519), each used for the algorithms of its type.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// A JWK set file.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWK set URL, fetched at start and refreshed in the background (https, or http to a
    /// loopback address).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How often `jwks_url` is fetched again.
    #[serde(default = "default_jwks_refresh", deserialize_with = "duration")]
    pub jwks_refresh: Duration,
    /// Least time between two fetches caused by tokens naming an unknown `kid`.
    #[serde(default = "default_jwks_cooldown", deserialize_with = "duration")]
    pub jwks_refetch_cooldown: Duration,
    /// HMAC secret read from this file (keep it mode 0600).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// HMAC secret read from this environment variable.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM private key used only by `api-shield token new` to mint test tokens.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// The claim holding scopes or roles: a space-separated string or an array.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// Claims forwarded upstream: claim name to header name. Client-sent headers with these
    /// names are removed from every request first.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_jwks_refresh() -> Duration {
    Duration::from_mins(5)
}

fn default_jwks_cooldown() -> Duration {
    Duration::from_secs(30)
}

fn default_scope_claim() -> String {
    "scope".to_owned()
}

/// `[api_keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The request header carrying a key.
    pub header: String,
    /// The known keys.
    pub keys: Vec<ApiKeyEntry>,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig {
            header: "x-api-key".to_owned(),
            keys: Vec::new(),
        }
    }
}

/// One API key, stored as its SHA-256 (make one with `api-shield key new`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Name for logs, rate limits and upstream headers.
    pub id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// RFC 3339 time after which the key is refused.
    #[serde(default)]
    pub expires: Option<String>,
}

/// `[routes.auth]`: who may call a route. A route with this table refuses anonymous requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteAuthConfig {
    /// Issuers whose bearer tokens are accepted.
    pub jwt: Vec<String>,
    /// Accept API keys (from `api_keys.header`).
    pub api_key: bool,
    /// Also accept an API key from this query parameter (off unless named).
    pub api_key_query: Option<String>,
    /// Scopes or roles required.
    pub scopes: Vec<String>,
    /// `all` (default) or `any` of `scopes`.
    pub scopes_match: ScopesMatch,
    /// Claim to read scopes from instead of the issuer's `scope_claim`.
    pub scope_claim: Option<String>,
}

/// How required scopes combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopesMatch {
    /// Every scope is needed.
    #[default]
    All,
    /// One of them is enough.
    Any,
}

/// `[routes.rate_limit]`, or the shorthand `rate_limit = "5 per minute"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `"<n> per second|minute|hour|day"`, as written.
    pub rate: String,
    /// Requests allowed at once (default: the rate's count).
    pub burst: Option<u32>,
    /// What a client is: `client_ip` (default), `api_key`, `subject` or `header:<name>`.
    pub key: String,
    /// Most clients tracked at once; past it, untracked clients share one budget.
    pub max_keys: usize,
    /// Whose budget: this host's (default), or the whole fleet's (needs `[fleet]`).
    pub scope: RateScope,
}

/// Where a rate limit's budget is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    /// Each host has its own budget.
    #[default]
    Host,
    /// The hosts of the fleet share one budget, through Redis.
    Fleet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitTable {
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default = "default_rate_key")]
    key: String,
    #[serde(default = "default_max_keys")]
    max_keys: usize,
    #[serde(default)]
    scope: RateScope,
}

fn default_rate_key() -> String {
    "client_ip".to_owned()
}

fn default_max_keys() -> usize {
    100_000
}

impl<'de> Deserialize<'de> for RateLimitConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = RateLimitConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate like \"5 per minute\" or a table with `rate`")
            }
            fn visit_str<E: de::Error>(self, rate: &str) -> Result<Self::Value, E> {
                Ok(RateLimitConfig {
                    rate: rate.to_owned(),
                    burst: None,
                    key: default_rate_key(),
                    max_keys: default_max_keys(),
                    scope: RateScope::Host,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let table =
                    RateLimitTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RateLimitConfig {
                    rate: table.rate,
                    burst: table.burst,
                    key: table.key,
                    max_keys: table.max_keys,
                    scope: table.scope,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `[routes.validate]`: what a request must look like before the upstream sees it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// Accepted media types of a request body (e.g. `application/json`).
    pub content_types: Vec<String>,
    /// Largest body for this route (default `proxy.max_body_bytes`).
    pub max_body_bytes: Option<u64>,
    /// Headers that must be present.
    pub required_headers: Vec<String>,
    /// JSON Schema (draft 2020-12) file the JSON body must satisfy.
    pub body_schema: Option<PathBuf>,
    /// JSON Schema file the query parameters (as an object of strings, typed by the schema's
    /// top-level `properties`) must satisfy.
    pub query_schema: Option<PathBuf>,
}

/// `[routes.deprecation]` or a `[[versioning.versions]]` entry's deprecation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeprecationConfig {
    /// RFC 3339 time from which it is deprecated (`Deprecation: @epoch`).
    pub deprecated: Option<String>,
    /// RFC 3339 time after which it is gone (`Sunset`), never before `deprecated`.
    pub sunset: Option<String>,
    /// URL of the successor (`Link: rel="successor-version"`).
    pub successor: Option<String>,
    /// URL describing the deprecation (`Link: rel="deprecation"`).
    pub link: Option<String>,
    /// After the sunset: `gone` (410, default) or `serve`.
    pub after_sunset: AfterSunset,
}

/// What happens after a sunset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterSunset {
    /// 410 Gone.
    #[default]
    Gone,
    /// Keep serving, with the headers.
    Serve,
}

/// `[versioning]`: where a request's API version is read and which versions are deprecated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VersioningConfig {
    /// `path` (a `v<N>` segment among the first three) or `header`.
    pub source: VersionSource,
    /// The header for `source = "header"`.
    pub header: String,
    /// Versions and their deprecation.
    pub versions: Vec<VersionConfig>,
}

impl Default for VersioningConfig {
    fn default() -> Self {
        VersioningConfig {
            source: VersionSource::Path,
            header: "api-version".to_owned(),
            versions: Vec::new(),
        }
    }
}

/// Where the version is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionSource {
    /// `/api/v1/...`.
    #[default]
    Path,
    /// A request header.
    Header,
}

/// One `[[versioning.versions]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionConfig {
    /// The version as it appears (`v1`).
    pub name: String,
    /// Its deprecation.
    #[serde(flatten)]
    pub deprecation: DeprecationConfig,
}

/// An `[[openapi]]` entry: routes and their validation imported from an OpenAPI 3.0/3.1
/// document (JSON or YAML). Imported routes are tried before the `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiConfig {
    /// The document.
    pub file: PathBuf,
    /// The upstream its routes forward to.
    pub upstream: String,
    /// Prefix added before every path of the document (e.g. `/api/v1`).
    #[serde(default)]
    pub path_prefix: String,
    /// Auth applied to every imported route.
    #[serde(default)]
    pub auth: Option<RouteAuthConfig>,
    /// Rate limit applied to every imported route (one budget per route).
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
}

/// `[escalation]`: repeated abuse seen at L7 becomes a ban at the NIC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// The rules.
    pub rules: Vec<EscalationRule>,
    /// Longest ban any rule may set (protects from a config mistake).
    #[serde(deserialize_with = "duration")]
    pub max_ban_ttl: Duration,
    /// Most bans in force; past it, escalation bans nobody more (and says so).
    pub max_active_bans: usize,
    /// Most client addresses counted at once, per rule.
    pub max_tracked_clients: usize,
    /// Sources never banned, besides `fastpath.allow` and `proxy.trusted_proxies`.
    pub never_ban: Vec<ipnet::IpNet>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            rules: Vec::new(),
            max_ban_ttl: Duration::from_hours(24),
            max_active_bans: 10_000,
            max_tracked_clients: 100_000,
            never_ban: Vec::new(),
        }
    }
}

/// One `[[escalation.rules]]` entry: `threshold` signals from one client within `window` ban it
/// for `ban`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationRule {
    /// Name for logs, metrics and the ban's reason.
    pub name: String,
    /// `auth_failure` (missing or bad credentials), `rate_limited` or `invalid_request`.
    pub signal: EscalationSignal,
    /// Signals that trigger the ban.
    pub threshold: u32,
    /// Over this long.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Ban length.
    #[serde(deserialize_with = "duration")]
    pub ban: Duration,
}

/// What a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationSignal {
    /// 401s: no credentials, bad token, bad key.
    AuthFailure,
    /// 429s.
    RateLimited,
    /// 400, 413, 415 and 422 answers: malformed or invalid requests.
    InvalidRequest,
}
