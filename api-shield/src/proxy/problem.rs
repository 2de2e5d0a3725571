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
    /// The exchange took longer than `request_timeout`.
    RequestTimeout,
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
            Denial::RequestTimeout => "request-timeout",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Denial::InvalidPath | Denial::BadRequest => StatusCode::BAD_REQUEST,
            Denial::NotFound => StatusCode::NOT_FOUND,
            Denial::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Denial::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Denial::CorsPreflightDenied => StatusCode::FORBIDDEN,
            Denial::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Denial::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Denial::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
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
            Denial::RequestTimeout => "The request took too long",
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
    let problem = Problem {
        kind: format!("{TYPE_BASE}{}", denial.slug()),
        title: denial.title(),
        status: denial.status().as_u16(),
        detail,
        request_id,
    };
    let body = serde_json::to_vec(&problem).expect("a problem serialises");
    let mut response = Response::new(full(body));
    *response.status_mut() = denial.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
