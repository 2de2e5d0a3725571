//! Refusals: why the shield answers a request itself instead of forwarding it, as every layer
//! shares it. Policies return a [`Refusal`], escalation reads its [`Denial`], the access log
//! and the metrics name it by [`Denial::slug`], and `proxy::request::problem` alone renders it as an
//! RFC 9457 `application/problem+json` answer. A leaf: no HTTP types and nothing of the rest
//! of the crate, so each layer can depend on it without depending on another.

use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

/// Why the shield answered instead of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The path could not be normalised safely.
    InvalidPath,
    /// No route matches.
    NotFound,
    /// A route matches, not with this method.
    MethodNotAllowed,
    /// The body is larger than allowed.
    PayloadTooLarge,
    /// A CORS preflight from an origin, method or header not allowed.
    CorsPreflightDenied,
    /// The upstream could not be reached or failed.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The request could not be read.
    BadRequest,
    /// The request head is larger than `proxy.max_header_bytes` (or has too many fields).
    HeadersTooLarge,
    /// The request target is too long.
    UriTooLong,
    /// The exchange took longer than `request_timeout`.
    RequestTimeout,
    /// The route needs credentials and none came.
    Unauthenticated,
    /// A bearer token that is not acceptable (signature, claims, algorithm, form).
    InvalidToken,
    /// An API key that is unknown or expired.
    InvalidApiKey,
    /// Valid credentials without the scope the route needs.
    InsufficientScope,
    /// Over the route's rate limit.
    RateLimited,
    /// A body of a media type the route does not take.
    UnsupportedMediaType,
    /// A required header is missing or the request is otherwise malformed for the route.
    InvalidRequest,
    /// The body is not well-formed JSON.
    MalformedBody,
    /// The body or query does not satisfy the route's schema.
    SchemaViolation,
    /// The API version or route is past its sunset.
    Gone,
    /// The client went away before its request was answered (its body ended in an error);
    /// logged as 499, as nginx does, and never answered (nobody is there).
    ClientClosedRequest,
}

impl Denial {
    /// Stable snake-case name (logs, metrics) and the last part of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Denial::InvalidPath => "invalid-path",
            Denial::NotFound => "not-found",
            Denial::MethodNotAllowed => "method-not-allowed",
            Denial::PayloadTooLarge => "payload-too-large",
            Denial::CorsPreflightDenied => "cors-preflight-denied",
            Denial::UpstreamUnavailable => "upstream-unavailable",
            Denial::UpstreamTimeout => "upstream-timeout",
            Denial::BadRequest => "bad-request",
            Denial::HeadersTooLarge => "headers-too-large",
            Denial::UriTooLong => "uri-too-long",
            Denial::RequestTimeout => "request-timeout",
            Denial::Unauthenticated => "unauthenticated",
            Denial::InvalidToken => "invalid-token",
            Denial::InvalidApiKey => "invalid-api-key",
            Denial::InsufficientScope => "insufficient-scope",
            Denial::RateLimited => "rate-limited",
            Denial::UnsupportedMediaType => "unsupported-media-type",
            Denial::InvalidRequest => "invalid-request",
            Denial::MalformedBody => "malformed-body",
            Denial::SchemaViolation => "schema-violation",
            Denial::Gone => "gone",
            Denial::ClientClosedRequest => "client-closed-request",
        }
    }

    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Denial::InvalidPath
            | Denial::BadRequest
            | Denial::InvalidRequest
            | Denial::MalformedBody => 400,
            Denial::Unauthenticated | Denial::InvalidToken | Denial::InvalidApiKey => 401,
            Denial::RateLimited => 429,
            Denial::UnsupportedMediaType => 415,
            Denial::SchemaViolation => 422,
            Denial::Gone => 410,
            Denial::NotFound => 404,
            Denial::MethodNotAllowed => 405,
            Denial::PayloadTooLarge => 413,
            Denial::CorsPreflightDenied | Denial::InsufficientScope => 403,
            Denial::UpstreamUnavailable => 502,
            Denial::UpstreamTimeout => 504,
            Denial::RequestTimeout => 408,
            Denial::HeadersTooLarge => 431,
            Denial::UriTooLong => 414,
            // Logged as nginx does; never sent (nobody is there to read it).
            Denial::ClientClosedRequest => 499,
        }
    }

    /// A short human-readable summary (the problem's `title`).
    pub fn title(self) -> &'static str {
        match self {
            Denial::InvalidPath => "The request path is not acceptable",
            Denial::NotFound => "No route for this request",
            Denial::MethodNotAllowed => "Method not allowed on this route",
            Denial::PayloadTooLarge => "Request body too large",
            Denial::CorsPreflightDenied => "Cross-origin request not allowed",
            Denial::UpstreamUnavailable => "The upstream service is unavailable",
            Denial::UpstreamTimeout => "The upstream service did not answer in time",
            Denial::BadRequest => "The request could not be read",
            Denial::HeadersTooLarge => "The request head is too large",
            Denial::UriTooLong => "The request target is too long",
            Denial::RequestTimeout => "The request took too long",
            Denial::Unauthenticated => "Credentials are required",
            Denial::InvalidToken => "The bearer token is not acceptable",
            Denial::InvalidApiKey => "The API key is not acceptable",
            Denial::InsufficientScope => "The credentials lack a required scope",
            Denial::RateLimited => "Too many requests",
            Denial::UnsupportedMediaType => "Unsupported content type",
            Denial::InvalidRequest => "The request does not meet the route's requirements",
            Denial::MalformedBody => "The request body is not well-formed",
            Denial::SchemaViolation => "The request does not match its schema",
            Denial::Gone => "This API version or route has been retired",
            Denial::ClientClosedRequest => "The client closed the request",
        }
    }
}

/// Most field errors listed in one problem body.
pub(crate) const MAX_FIELD_ERRORS: usize = 16;

/// One failing part of a request: where (a JSON pointer into the body, or `query`/`header`
/// plus a pointer) and which rule. Never the failing value, which may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer of the failing value (`/items/0/qty`), prefixed by `#query` for the query.
    pub pointer: String,
    /// The schema keyword that failed (`type`, `required`, `maximum`, ...).
    pub keyword: String,
}

/// What an answer tells the client beyond its status: each becomes response headers. Carried
/// by refusals, and by admitted requests for the upstream's answer (rate-limit state,
/// deprecation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    /// How to authenticate (`WWW-Authenticate`): a challenge, checked to be header text when
    /// its policy was compiled.
    Challenge(Arc<str>),
    /// When to try again, in seconds (`Retry-After`).
    RetryAfter(u64),
    /// A rate limit's policy and what is left of it (`RateLimit-Policy`, `RateLimit`).
    RateLimit {
        /// The policy, as the `RateLimit-Policy` header gives it.
        policy: Arc<str>,
        /// Requests left in the window.
        remaining: u64,
        /// Seconds until the window resets.
        reset_secs: u64,
    },
    /// A deprecated version or route (`Deprecation`, `Sunset`, `Link`).
    Deprecation(Arc<DeprecationNotice>),
    /// The methods a route takes (`Allow`), comma-separated.
    Allow(String),
}

/// The notice of a deprecated version or route, as header text checked when compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeprecationNotice {
    /// RFC 9745 `Deprecation`: `@<epoch seconds>`.
    pub deprecation: Option<String>,
    /// RFC 8594 `Sunset`: an HTTP date.
    pub sunset: Option<String>,
    /// `Link`: the deprecation and successor links.
    pub link: Option<String>,
}

/// A refusal: the denial, a detail that never echoes request data, failing fields, and what
/// the answer advises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub denial: Denial,
    /// A fixed explanation, or one built from the shield's own words (never the request's).
    pub detail: Option<Cow<'static, str>>,
    /// Failing fields (at most [`MAX_FIELD_ERRORS`] are shown).
    pub errors: Vec<FieldError>,
    /// What the answer tells the client beyond its status.
    pub advice: Vec<Advice>,
}

impl Refusal {
    /// A refusal with no detail.
    pub fn new(denial: Denial) -> Refusal {
        Refusal {
            denial,
            detail: None,
            errors: Vec::new(),
            advice: Vec::new(),
        }
    }

    /// With an explanation.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Refusal {
        self.detail = Some(detail.into());
        self
    }

    /// With failing fields.
    #[must_use]
    pub fn errors(mut self, errors: Vec<FieldError>) -> Refusal {
        self.errors = errors;
        self
    }

    /// With advice for the client.
    #[must_use]
    pub fn advise(mut self, advice: Advice) -> Refusal {
        self.advice.push(advice);
        self
    }
}
