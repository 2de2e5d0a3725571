//! Every response the shield makes itself, rendered from a [`Refusal`] in one place: an
//! `application/problem+json` body (RFC 9457) with a stable `type` per denial, a title, the
//! status and, where it helps, a detail that never echoes request data or internals; and the
//! headers its [`Advice`] calls for, which admitted requests' answers carry too.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde::Serialize;

use crate::refusal::{Advice, FieldError, Refusal, MAX_FIELD_ERRORS};

/// Base of the `type` URIs.
const TYPE_BASE: &str = "https://api-shield.dev/problems/";

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

/// The response body type of the proxy.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A refusal rendered: what the answer to it is made of.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The status.
    pub status: StatusCode,
    /// Its media type, no caching, and the advice's headers.
    pub headers: HeaderMap,
    /// The problem+json body.
    pub body: Vec<u8>,
}

/// The one rendering of a refusal, for the request `request_id`.
pub(crate) fn rendered(refusal: &Refusal, request_id: Option<&str>) -> Rendered {
    let denial = refusal.denial;
    let status = denial.status();
    let problem = Problem {
        kind: format!("{TYPE_BASE}{}", denial.slug()),
        title: denial.title(),
        status,
        detail: refusal.detail.as_deref(),
        request_id,
        errors: &refusal.errors[..refusal.errors.len().min(MAX_FIELD_ERRORS)],
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    apply_advice(&refusal.advice, &mut headers);
    Rendered {
        status: StatusCode::from_u16(status).expect("every denial has a valid status code"),
        headers,
        body: serde_json::to_vec(&problem).expect("a problem serialises"),
    }
}

/// The answer to a refusal, for the request `request_id`.
pub(crate) fn render(refusal: &Refusal, request_id: Option<&str>) -> Response<Body> {
    let Rendered {
        status,
        headers,
        body,
    } = rendered(refusal, request_id);
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Writes the headers `advice` calls for (each once; a later advice of the same header wins).
pub(crate) fn apply_advice(advice: &[Advice], headers: &mut HeaderMap) {
    let mut set = |name: HeaderName, text: &str| {
        // Header text is checked when the policy giving it is compiled.
        if let Ok(value) = HeaderValue::from_str(text) {
            headers.insert(name, value);
        }
    };
    for item in advice {
        match item {
            Advice::Challenge(challenge) => set(header::WWW_AUTHENTICATE, challenge),
            Advice::RetryAfter(secs) => set(header::RETRY_AFTER, &secs.to_string()),
            Advice::RateLimit {
                policy,
                remaining,
                reset_secs,
            } => {
                set(HeaderName::from_static("ratelimit-policy"), policy);
                set(
                    HeaderName::from_static("ratelimit"),
                    &format!("\"default\";r={remaining};t={reset_secs}"),
                );
            }
            Advice::Deprecation(notice) => {
                for (name, text) in [
                    ("deprecation", &notice.deprecation),
                    ("sunset", &notice.sunset),
                    ("link", &notice.link),
                ] {
                    if let Some(text) = text {
                        set(HeaderName::from_static(name), text);
                    }
                }
            }
            Advice::Allow(methods) => set(header::ALLOW, methods),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::refusal::{Denial, DeprecationNotice};

    #[test]
    fn a_refusal_renders_its_status_body_and_advice() {
        let refusal = Refusal::new(Denial::RateLimited)
            .detail("slow down")
            .advise(Advice::RetryAfter(12))
            .advise(Advice::RateLimit {
                policy: Arc::from("\"default\";q=5;w=60"),
                remaining: 0,
                reset_secs: 12,
            });
        let out = rendered(&refusal, Some("abc"));
        assert_eq!(out.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(out.headers["content-type"], "application/problem+json");
        assert_eq!(out.headers["retry-after"], "12");
        assert_eq!(out.headers["ratelimit-policy"], "\"default\";q=5;w=60");
        assert_eq!(out.headers["ratelimit"], "\"default\";r=0;t=12");
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "https://api-shield.dev/problems/rate-limited",
                "title": "Too many requests",
                "status": 429,
                "detail": "slow down",
                "request_id": "abc",
            })
        );
    }

    #[test]
    fn advice_writes_each_header_once_and_field_errors_are_capped() {
        let notice = Arc::new(DeprecationNotice {
            deprecation: Some("@1735689600".to_owned()),
            sunset: None,
            link: Some("<https://d.example>; rel=\"deprecation\"".to_owned()),
        });
        let errors = (0..40)
            .map(|i| FieldError {
                pointer: format!("/{i}"),
                keyword: "type".to_owned(),
            })
            .collect();
        let refusal = Refusal::new(Denial::SchemaViolation)
            .errors(errors)
            .advise(Advice::Deprecation(Arc::clone(&notice)))
            .advise(Advice::Deprecation(notice));
        let out = rendered(&refusal, None);
        assert_eq!(out.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(out.headers.get_all("deprecation").iter().count(), 1);
        assert!(!out.headers.contains_key("sunset"));
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["errors"].as_array().unwrap().len(), MAX_FIELD_ERRORS);
    }
}
