//! Every response the shield makes itself: `application/problem+json` (RFC 9457) with a stable
//! `type` per reason, a title, the status and, where it helps, a detail that never echoes
//! request data or internals.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde::Serialize;

/// Base of the `type` URIs.
const TYPE_BASE: &str = "https://api-shield.dev/problems/";

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

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Denial::InvalidPath
            | Denial::BadRequest
            | Denial::InvalidRequest
            | Denial::MalformedBody => StatusCode::BAD_REQUEST,
            Denial::Unauthenticated | Denial::InvalidToken | Denial::InvalidApiKey => {
                StatusCode::UNAUTHORIZED
            }
            Denial::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Denial::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Denial::SchemaViolation => StatusCode::UNPROCESSABLE_ENTITY,
            Denial::Gone => StatusCode::GONE,
            Denial::NotFound => StatusCode::NOT_FOUND,
            Denial::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Denial::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::CorsPreflightDenied | Denial::InsufficientScope => StatusCode::FORBIDDEN,
            Denial::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Denial::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Denial::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Denial::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Denial::UriTooLong => StatusCode::URI_TOO_LONG,
            Denial::ClientClosedRequest => {
                StatusCode::from_u16(499).expect("499 is a valid status code")
            }
        }
    }

    fn title(self) -> &'static str {
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

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

/// Most field errors listed in one problem body.
pub const MAX_FIELD_ERRORS: usize = 16;

/// One failing part of a request: where (a JSON pointer into the body, or `query`/`header`
/// plus a pointer) and which rule. Never the failing value, which may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON pointer of the failing value (`/items/0/qty`), prefixed by `#query` for the query.
    pub pointer: String,
    /// The schema keyword that failed (`type`, `required`, `maximum`, ...).
    pub keyword: String,
}

/// A policy's refusal: the denial, a detail that never echoes request data, failing fields,
/// and headers the answer carries (`WWW-Authenticate`, `Retry-After`, `RateLimit`...).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub denial: Denial,
    /// A fixed explanation.
    pub detail: Option<&'static str>,
    /// Failing fields (at most [`MAX_FIELD_ERRORS`]).
    pub errors: Vec<FieldError>,
    /// Headers for the response (boxed: rejections travel in `Result`s, kept small).
    pub headers: Box<http::HeaderMap>,
}

impl Rejection {
    /// A rejection with no detail.
    pub fn new(denial: Denial) -> Rejection {
        Rejection {
            denial,
            detail: None,
            errors: Vec::new(),
            headers: Box::default(),
        }
    }

    /// With a fixed explanation.
    #[must_use]
    pub fn detail(mut self, detail: &'static str) -> Rejection {
        self.detail = Some(detail);
        self
    }

    /// With a header.
    #[must_use]
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Rejection {
        self.headers.append(name, value);
        self
    }

    /// The problem response, for the request `request_id`.
    pub fn into_response(self, request_id: Option<&str>) -> Response<Body> {
        let mut response = render(self.denial, self.detail, &self.errors, request_id);
        response.headers_mut().extend(*self.headers);
        response
    }
}

/// The response body type of the proxy.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The problem response for a denial; `detail` must not echo request data.
pub fn response(denial: Denial, detail: Option<&str>, request_id: Option<&str>) -> Response<Body> {
    render(denial, detail, &[], request_id)
}

/// The `application/problem+json` body of a denial.
pub fn problem_json(
    denial: Denial,
    detail: Option<&str>,
    errors: &[FieldError],
    request_id: Option<&str>,
) -> Vec<u8> {
    let problem = Problem {
        kind: format!("{TYPE_BASE}{}", denial.slug()),
        title: denial.title(),
        status: denial.status().as_u16(),
        detail,
        request_id,
        errors: &errors[..errors.len().min(MAX_FIELD_ERRORS)],
    };
    serde_json::to_vec(&problem).expect("a problem serialises")
}

fn render(
    denial: Denial,
    detail: Option<&str>,
    errors: &[FieldError],
    request_id: Option<&str>,
) -> Response<Body> {
    let body = problem_json(denial, detail, errors, request_id);
    let mut response = Response::new(full(body));
    *response.status_mut() = denial.status();
    problem_headers(response.headers_mut());
    response
}

/// The headers of every problem answer: its media type, and no caching.
pub fn problem_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
