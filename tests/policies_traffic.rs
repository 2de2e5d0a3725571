//! Validation, OpenAPI-imported routes, rate limits and deprecation against the running shield:
//! schema pass and fail with pointers, wrong media type, oversized body, query schemas, 429 with
//! `Retry-After` and the RateLimit headers, Deprecation/Sunset/Link and 410 after the sunset.
//! Nothing refused reaches the upstream.

use crate::support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{
    https::{get, Reply, Upstream, Version},
    shield::Shield,
};

fn examples() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/examples")
}

fn post(target: &str, content_type: &str, body: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(target)
        .header("host", "localhost")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

fn problem(reply: &Reply, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(reply.status.as_u16(), status, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let body = reply.json();
    assert_eq!(
        body["type"],
        format!("https://api-shield.dev/problems/{slug}")
    );
    body
}

fn pointers(body: &serde_json::Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_owned(),
                e["keyword"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_media_types_and_sizes() {
    let upstream = Upstream::start().await;
    let routes = format!(
        r#"
[[routes]]
name = "feedback"
path = "/feedback"
methods = ["POST"]
upstream = "api"
[routes.validate]
content_types = ["application/json"]
max_body_bytes = 256
required_headers = ["x-tenant"]
body_schema = "{schema}"

[[routes]]
name = "plain"
path = "/plain"
upstream = "api"
"#,
        schema = examples().join("feedback.schema.json").display()
    );
    let shield = Shield::start(upstream.addr, &routes);
    let tenant = |mut r: Request<Full<Bytes>>| {
        r.headers_mut().insert("x-tenant", "acme".parse().unwrap());
        r
    };
    let good = r#"{"rating": 5, "comment": "fine"}"#;
    for version in [Version::H1, Version::H2] {
        let reply = shield
            .send(version, tenant(post("/feedback", "application/json", good)))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    let reply = shield
        .send(
            Version::H1,
            tenant(post(
                "/feedback",
                "application/json",
                r#"{"rating": 9, "comment": "hunter2-password", "extra": 1}"#,
            )),
        )
        .await;
    let body = problem(&reply, 422, "schema-violation");
    assert_eq!(
        pointers(&body),
        vec![
            ("".to_owned(), "additionalProperties".to_owned()),
            ("/rating".to_owned(), "maximum".to_owned())
        ]
    );
    assert!(!String::from_utf8_lossy(&reply.body).contains("hunter2"));
    let reply = shield
        .send(
            Version::H2,
            tenant(post("/feedback", "application/json", "{\"rating\": ")),
        )
        .await;
    problem(&reply, 400, "malformed-body");
    // A repeated member name: the schema would see one value, an upstream may read the other.
    let reply = shield
        .send(
            Version::H1,
            tenant(post(
                "/feedback",
                "application/json",
                r#"{"rating": 99, "rating": 5}"#,
            )),
        )
        .await;
    let body = problem(&reply, 400, "malformed-body");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("repeats a member name"),
        "{body}"
    );
    let reply = shield
        .send(Version::H1, tenant(post("/feedback", "text/plain", good)))
        .await;
    problem(&reply, 415, "unsupported-media-type");
    let reply = shield
        .send(Version::H1, post("/feedback", "application/json", good))
        .await;
    problem(&reply, 400, "invalid-request");
    let big = format!(r#"{{"rating": 5, "comment": "{}"}}"#, "x".repeat(300));
    let reply = shield
        .send(
            Version::H2,
            tenant(post("/feedback", "application/json", &big)),
        )
        .await;
    problem(&reply, 413, "payload-too-large");
    // A route without validation takes any body up to the proxy limit, unread.
    let reply = shield
        .send(Version::H1, post("/plain", "text/plain", "anything"))
        .await;
    assert_eq!(reply.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[2].body_len, "anything".len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_imported_from_openapi_validate_query_and_body() {
    let upstream = Upstream::start().await;
    let routes = format!(
        r#"
[[openapi]]
file = "{file}"
upstream = "api"
path_prefix = "/api/v1"
"#,
        file = examples().join("orders-openapi.yaml").display()
    );
    let shield = Shield::start(upstream.addr, &routes);
    let ok = [
        get("GET", "/api/v1/orders?limit=10&status=open"),
        get("GET", "/api/v1/orders/o-17"),
        post(
            "/api/v1/orders",
            "application/json",
            r#"{"item": "tea", "quantity": 2, "note": null}"#,
        ),
    ];
    for request in ok {
        let reply = shield.send(Version::H1, request).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
    }
    let reply = shield
        .send(
            Version::H1,
            get("GET", "/api/v1/orders?limit=1000&status=lost"),
        )
        .await;
    let body = problem(&reply, 422, "schema-violation");
    assert_eq!(
        pointers(&body),
        vec![
            ("#query/limit".to_owned(), "maximum".to_owned()),
            ("#query/status".to_owned(), "enum".to_owned())
        ]
    );
    let reply = shield
        .send(
            Version::H2,
            post(
                "/api/v1/orders",
                "application/json",
                r#"{"quantity": "two"}"#,
            ),
        )
        .await;
    let body = problem(&reply, 422, "schema-violation");
    assert_eq!(
        pointers(&body),
        vec![
            ("".to_owned(), "required".to_owned()),
            ("/quantity".to_owned(), "type".to_owned())
        ]
    );
    let reply = shield
        .send(Version::H1, get("DELETE", "/api/v1/orders"))
        .await;
    problem(&reply, 405, "method-not-allowed");
    assert_eq!(reply.headers["allow"], "GET, HEAD, POST");
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_routes_answer_429_with_headers() {
    let upstream = Upstream::start().await;
    let routes = r#"
[[routes]]
name = "login"
path = "/login"
upstream = "api"
rate_limit = "5 per minute"
"#;
    let shield = Shield::start(upstream.addr, routes);
    for remaining in (0..5).rev() {
        let reply = shield.send(Version::H1, get("GET", "/login")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["ratelimit-policy"], "\"default\";q=5;w=60");
        let header = reply.headers["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            header.starts_with(&format!("\"default\";r={remaining};t=")),
            "{header}"
        );
    }
    let reply = shield.send(Version::H2, get("GET", "/login")).await;
    problem(&reply, 429, "rate-limited");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=12).contains(&retry), "{retry}");
    assert_eq!(
        reply.headers["ratelimit"],
        format!("\"default\";r=0;t={retry}").as_str()
    );
    assert_eq!(upstream.seen().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_versions_and_routes_then_gone_after_sunset() {
    let upstream = Upstream::start().await;
    let routes = r#"
[versioning]
source = "path"
[[versioning.versions]]
name = "v1"
deprecated = "2025-01-01T00:00:00Z"
sunset = "2099-01-01T00:00:00Z"
successor = "https://api.example.com/api/v2"
link = "https://docs.example.com/v1"

[[versioning.versions]]
name = "v0"
deprecated = "2020-01-01T00:00:00Z"
sunset = "2021-01-01T00:00:00Z"

[[routes]]
name = "api"
path = "/api/*"
upstream = "api"

[[routes]]
name = "legacy-export"
path = "/export"
upstream = "api"
[routes.deprecation]
deprecated = "2024-06-01T00:00:00Z"
sunset = "2024-12-01T00:00:00Z"
after_sunset = "serve"
"#;
    let shield = Shield::start(upstream.addr, routes);
    let reply = shield.send(Version::H1, get("GET", "/api/v1/orders")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["deprecation"], "@1735689600");
    assert_eq!(reply.headers["sunset"], "Thu, 01 Jan 2099 00:00:00 GMT");
    assert_eq!(
        reply.headers["link"],
        "<https://docs.example.com/v1>; rel=\"deprecation\", <https://api.example.com/api/v2>; rel=\"successor-version\""
    );
    let reply = shield.send(Version::H2, get("GET", "/api/v2/orders")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.get("deprecation").is_none());
    let reply = shield.send(Version::H1, get("GET", "/api/v0/orders")).await;
    problem(&reply, 410, "gone");
    assert_eq!(reply.headers["sunset"], "Fri, 01 Jan 2021 00:00:00 GMT");
    let reply = shield.send(Version::H1, get("GET", "/export")).await;
    assert_eq!(reply.status, 200, "after_sunset = serve");
    assert_eq!(reply.headers["sunset"], "Sun, 01 Dec 2024 00:00:00 GMT");
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_limit_runs_before_auth_so_guessing_is_limited_too() {
    let upstream = Upstream::start().await;
    let routes = r#"
[api_keys]
keys = [{ id = "k", sha256 = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b" }]

[[routes]]
name = "login"
path = "/login"
upstream = "api"
rate_limit = { rate = "3 per minute", key = "client_ip" }
[routes.auth]
api_key = true
"#;
    let shield = Shield::start(upstream.addr, routes);
    let guess = |key: &str| {
        let mut request = get("GET", "/login");
        request
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        request
    };
    for attempt in 0..3 {
        let reply = shield
            .send(Version::H1, guess(&format!("guess-{attempt}")))
            .await;
        problem(&reply, 401, "invalid-api-key");
        assert!(
            reply.headers.contains_key("ratelimit"),
            "limited routes say so on every answer"
        );
    }
    // The fourth guess is refused by the limit before any key is looked at, and so would be
    // the right key.
    let reply = shield.send(Version::H1, guess("guess-3")).await;
    problem(&reply, 429, "rate-limited");
    let reply = shield.send(Version::H1, guess("secret")).await;
    problem(&reply, 429, "rate-limited");
    assert!(upstream.seen().is_empty());
}
