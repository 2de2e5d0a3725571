//! The L7 proxy end to end: the real daemon binary with TLS from a CA made in the test, a real
//! upstream, and TLS clients speaking HTTP/1.1 and HTTP/2: routing, 404/405, path
//! normalisation bypasses, CORS, limits, timeouts, forwarding headers, smuggling vectors. The
//! upstream side (connection reuse, upstream failure, upgrades, the default upstream, the
//! access log's one line per request) is in proxy_upstream.rs, TLS itself and the plain
//! listener's redirects in proxy_tls.rs.

use crate::support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{
    https::{client_config, get, Upstream, Version},
    shield::{with_headers, with_origin, Shield, ROUTES},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_proxy_over_h1_and_h2_with_forwarding_and_security_headers() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    for version in [Version::H1, Version::H2] {
        let request = with_headers(
            get("GET", "/api/v1/users/42?full=1"),
            &[
                ("x-request-id", "trace-abc-123"),
                ("x-forwarded-for", "6.6.6.6"),
                ("connection", "x-drop-me"),
                ("x-drop-me", "1"),
            ],
        );
        let reply = shield.send(version, request).await;
        assert_eq!(reply.status, 200, "{version:?}: {:?}", reply.body);
        assert_eq!(
            reply.version,
            if version == Version::H1 {
                http::Version::HTTP_11
            } else {
                http::Version::HTTP_2
            }
        );
        assert_eq!(reply.body, "upstream:/api/v1/users/42?full=1");
        assert_eq!(reply.headers["x-request-id"], "trace-abc-123");
        assert_eq!(
            reply.headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert!(reply.headers.get("server").is_none(), "no Server banner");
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.headers["x-forwarded-for"], "127.0.0.1",
            "the client cannot choose its address"
        );
        assert_eq!(request.headers["x-forwarded-proto"], "https");
        assert_eq!(request.headers["x-forwarded-host"], "localhost");
        assert_eq!(request.headers["x-request-id"], "trace-abc-123");
        assert!(
            request.headers.get("x-drop-me").is_none(),
            "headers named by Connection are hop-by-hop"
        );
    }
    // A request without an id gets a fresh one, on the response and upstream alike.
    let reply = shield.send(Version::H1, get("GET", "/public/x")).await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(upstream.seen()[2].headers["x-request-id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_requests_get_404_and_405_problems_without_reaching_the_upstream() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    for version in [Version::H1, Version::H2] {
        let reply = shield.send(version, get("GET", "/nowhere")).await;
        assert_eq!(reply.status, 404);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
        let body = reply.json();
        assert_eq!(body["type"], "https://api-shield.dev/problems/not-found");
        assert_eq!(body["status"], 404);
        let reply = shield
            .send(version, get("DELETE", "/api/v1/users/42"))
            .await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.headers["allow"], "GET, HEAD, PUT");
        assert_eq!(
            reply.json()["type"],
            "https://api-shield.dev/problems/method-not-allowed"
        );
        let reply = shield.send(version, get("GET", "/api/v1/users/")).await;
        assert_eq!(
            reply.status, 404,
            "an empty template segment does not match"
        );
    }
    assert!(upstream.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_normalisation_defeats_route_bypasses() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    // Each of these aims at /admin/... (no route) through the /public/* route's prefix.
    let bypasses = [
        "/public/../admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "//admin/x",
        "/%61dmin/x",
        "/public/./../admin/x",
        "/public/x/../../admin/x",
    ];
    for target in bypasses {
        let reply = shield.send(Version::H1, get("GET", target)).await;
        assert_eq!(reply.status, 404, "{target}");
    }
    for target in [
        "/public/%2fadmin",
        "/public/%2Fadmin",
        "/public/a%00b",
        "/public/a%5c..%5cadmin",
        "/public/%zz",
    ] {
        let reply = shield.send(Version::H1, get("GET", target)).await;
        assert_eq!(reply.status, 400, "{target}");
        assert_eq!(
            reply.json()["type"],
            "https://api-shield.dev/problems/invalid-path",
            "{target}"
        );
    }
    assert!(
        upstream.seen().is_empty(),
        "nothing reached the upstream: {:?}",
        upstream.seen()
    );
    // What does reach the upstream is the normalised path.
    let reply = shield
        .send(Version::H2, get("GET", "/public//a/./b/../%63?q=%2e"))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen()[0].target, "/public/a/c?q=%2e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_at_the_edge_and_headers_only_for_allowed_origins() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    // Allowed preflight: answered by the shield.
    let mut preflight = with_origin("OPTIONS", "/cors/item", "https://app.example.com");
    preflight
        .headers_mut()
        .insert("access-control-request-method", "PUT".parse().unwrap());
    preflight.headers_mut().insert(
        "access-control-request-headers",
        "Content-Type".parse().unwrap(),
    );
    let reply = shield.send(Version::H2, preflight).await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(reply.headers["access-control-allow-credentials"], "true");
    assert_eq!(reply.headers["access-control-max-age"], "600");
    assert!(reply.headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    // Preflights for a method or header not allowed, or another origin, are refused.
    for (origin, method, headers) in [
        ("https://app.example.com", "DELETE", None),
        ("https://app.example.com", "PUT", Some("x-secret")),
        ("https://evil.example.com", "PUT", None),
        ("https://tenant.example", "GET", None),
    ] {
        let mut preflight = with_origin("OPTIONS", "/cors/item", origin);
        preflight
            .headers_mut()
            .insert("access-control-request-method", method.parse().unwrap());
        if let Some(h) = headers {
            preflight
                .headers_mut()
                .insert("access-control-request-headers", h.parse().unwrap());
        }
        let reply = shield.send(Version::H1, preflight).await;
        assert_eq!(reply.status, 403, "{origin} {method} {headers:?}");
        assert!(reply.headers.get("access-control-allow-origin").is_none());
        assert!(reply.headers["vary"].to_str().unwrap().contains("Origin"));
    }
    assert!(
        upstream.seen().is_empty(),
        "preflights never reach the upstream"
    );
    // Actual requests: allowed exact and wildcard-subdomain origins get the headers.
    for origin in [
        "https://app.example.com",
        "https://a.tenant.example",
        "https://x.y.tenant.example",
    ] {
        let reply = shield
            .send(Version::H1, with_origin("GET", "/cors/item", origin))
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.headers["access-control-allow-origin"], origin);
        assert_eq!(reply.headers["access-control-allow-credentials"], "true");
        assert_eq!(
            reply.headers["access-control-expose-headers"],
            "x-request-id"
        );
        assert_eq!(reply.headers["vary"], "Origin");
    }
    // A disallowed origin gets no CORS headers, but still Vary: Origin.
    let reply = shield
        .send(
            Version::H1,
            with_origin("GET", "/cors/item", "https://evil.example"),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.get("access-control-allow-origin").is_none());
    assert_eq!(reply.headers["vary"], "Origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_before_the_upstream_sees_anything() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    for version in [Version::H1, Version::H2] {
        let request = Request::builder()
            .method("PUT")
            .uri("/api/v1/users/1")
            .header("host", "localhost")
            .header("content-length", "2048")
            .body(Full::new(Bytes::from(vec![b'x'; 2048])))
            .unwrap();
        let reply = shield.send(version, request).await;
        assert_eq!(reply.status, 413, "{version:?}");
        assert_eq!(
            reply.json()["type"],
            "https://api-shield.dev/problems/payload-too-large"
        );
    }
    assert!(upstream.seen().is_empty());
    // Within the limit, the body goes through whole.
    let request = Request::builder()
        .method("PUT")
        .uri("/api/v1/users/1")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(vec![b'x'; 1000])))
        .unwrap();
    let reply = shield.send(Version::H2, request).await;
    assert_eq!(reply.status, 200);
    assert_eq!(upstream.seen()[0].body_len, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_by_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let mut tls = shield.tls(Version::H1).await.unwrap();
    // Half a request head, then silence (slowloris).
    tls.write_all(b"GET /api/v1/users/1 HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut buf),
    )
    .await;
    assert!(read.is_ok(), "the shield must close the connection");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900),
        "closed after {waited:?}, before the 1 s timeout"
    );
    assert!(upstream.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_headers_get_431_without_reaching_the_upstream() {
    let upstream = Upstream::start().await;
    let shield = Shield::start_with(
        upstream.addr,
        ROUTES,
        "max_header_bytes = 8192\nmax_headers = 20",
    );
    let mut many = get("GET", "/public/x");
    for i in 0..30 {
        many.headers_mut().insert(
            http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
            "1".parse().unwrap(),
        );
    }
    let reply = shield.send(Version::H1, many).await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(
        reply.json()["type"],
        "https://api-shield.dev/problems/headers-too-large"
    );
    assert!(reply.headers.contains_key("strict-transport-security"));
    let mut big = get("GET", "/public/x");
    big.headers_mut()
        .insert("x-big", "a".repeat(10_000).parse().unwrap());
    let reply = shield.send(Version::H1, big).await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert!(upstream.seen().is_empty());
    assert_eq!(
        shield
            .send(Version::H1, get("GET", "/public/x"))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_address_are_limited() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start_with(upstream.addr, ROUTES, "max_connections_per_ip = 2");
    let config = client_config(&shield.pki.ca, Version::H2);
    let (mut first, _) = support::https::connect_h2(shield.https, config.clone()).await;
    let (_second, _) = support::https::connect_h2(shield.https, config.clone()).await;
    assert_eq!(
        first
            .send_request(get("GET", "https://localhost/public/1"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The third is closed as soon as it is accepted: its handshake fails.
    let third = shield.tls(Version::H2).await;
    assert!(
        third.is_err(),
        "a third connection from the same address must be refused"
    );
    assert!(shield.daemon.log.iter().all(|l| !l.contains("panicked")));
    // A client refused again and again makes one warning per interval, not one per connection
    // (the metric counts them all).
    for _ in 0..30 {
        assert!(shield.tls(Version::H2).await.is_err());
    }
    let admin = shield.admin;
    let refused = move || async move {
        let samples = support::admin::scrape(admin).await;
        support::admin::value(
            &samples,
            "api_shield_connections_refused_total{reason=per_address}",
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while refused().await < 31.0 {
        assert!(std::time::Instant::now() < deadline, "refusals not counted");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Closing one frees its place: a new connection gets through once the shield sees the close.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let attempt = shield.tls(Version::H2).await;
        if attempt.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed connection's place was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    shield.daemon.stop();
    let warnings = shield
        .daemon
        .log
        .iter()
        .filter(|l| l.contains("too many open from this address"))
        .count();
    assert_eq!(warnings, 1, "{:?}", shield.daemon.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_kept_only_from_trusted_proxies() {
    let upstream = Upstream::start().await;
    let mut shield =
        Shield::start_with(upstream.addr, ROUTES, "trusted_proxies = [\"127.0.0.0/8\"]");
    let mut request = get("GET", "/public/x");
    request
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    assert_eq!(shield.send(Version::H1, request).await.status, 200);
    assert_eq!(
        upstream.seen()[0].headers["x-forwarded-for"],
        "203.0.113.9, 127.0.0.1"
    );
    shield
        .daemon
        .wait_for(
            "\"client_ip\":\"203.0.113.9\"",
            std::time::Duration::from_secs(5),
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_outlasts_the_request_timeout_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let shield = Shield::start_with(upstream.addr, ROUTES, "request_timeout = \"1s\"");
    let mut tls = shield.tls(Version::H1).await.unwrap();
    // A body announced at 100 bytes, 10 sent, then silence (slow POST).
    tls.write_all(
        b"PUT /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut head = [0u8; 12];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_exact(&mut head),
    )
    .await
    .expect("the shield answers")
    .unwrap();
    assert_eq!(&head, b"HTTP/1.1 408");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_vectors_are_refused_or_neutralised() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    // HTTP/2 with a Host header that disagrees with :authority.
    let mut request = get("GET", "https://localhost/public/a");
    request
        .headers_mut()
        .insert("host", "admin.internal".parse().unwrap());
    let reply = shield.send(Version::H2, request).await;
    assert_eq!(reply.status, 400);
    // Absolute-form HTTP/1.1 target naming another host than Host.
    let mut request = get("GET", "https://localhost/public/a");
    request
        .headers_mut()
        .insert("host", "admin.internal".parse().unwrap());
    assert_eq!(shield.send(Version::H1, request).await.status, 400);
    // Two Host headers.
    let mut request = get("GET", "/public/a");
    request
        .headers_mut()
        .append("host", "admin.internal".parse().unwrap());
    assert_eq!(shield.send(Version::H1, request).await.status, 400);
    assert!(upstream.seen().is_empty());
    // An h2c upgrade is not an upgrade here: forwarded as a plain request, upgrade headers gone.
    let mut request = get("GET", "/public/h2c");
    request
        .headers_mut()
        .insert("connection", "Upgrade, HTTP2-Settings".parse().unwrap());
    request
        .headers_mut()
        .insert("upgrade", "h2c".parse().unwrap());
    request.headers_mut().insert(
        "http2-settings",
        "AAMAAABkAAQCAAAAAAIAAAAA".parse().unwrap(),
    );
    let reply = shield.send(Version::H1, request).await;
    assert_eq!(reply.status, 200);
    let seen = upstream.seen();
    assert!(seen[0].headers.get("upgrade").is_none());
    assert!(seen[0].headers.get("http2-settings").is_none());
    assert_eq!(
        seen[0].headers["host"], "localhost",
        "the upstream gets the host routing saw"
    );
    // A preflight-looking OPTIONS on a route without CORS is routed as OPTIONS: 405 here.
    let mut preflight = with_origin("OPTIONS", "/api/v1/users/1", "https://app.example.com");
    preflight
        .headers_mut()
        .insert("access-control-request-method", "GET".parse().unwrap());
    assert_eq!(shield.send(Version::H1, preflight).await.status, 405);
    // Dot segments with parameters.
    assert_eq!(
        shield
            .send(Version::H1, get("GET", "/public/..;/admin"))
            .await
            .status,
        400
    );
    assert_eq!(upstream.seen().len(), 1);
}
