//! The L7 proxy end to end: the real daemon binary with TLS from a CA made in the test, a real
//! upstream, and TLS clients speaking HTTP/1.1 and HTTP/2: routing, 404/405, path
//! normalisation bypasses, CORS, HSTS only over TLS, body limits, upstream failure.
// Pedantic lints are for the product code; tests favour plain, direct code.
#![allow(clippy::pedantic)]

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{
    daemon::Daemon,
    https::{client_config, get, send, TestPki, Upstream, Version},
};

struct Shield {
    daemon: Daemon,
    https: SocketAddr,
    http: SocketAddr,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl Shield {
    /// Starts the daemon (fast path off) in front of `upstream` with `routes` (TOML).
    fn start(upstream: SocketAddr, routes: &str) -> Shield {
        Shield::start_with(upstream, routes, "")
    }

    /// The same, with more `[proxy]` settings.
    fn start_with(upstream: SocketAddr, routes: &str, proxy: &str) -> Shield {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        Shield::start_full(upstream, routes, proxy, "", "", pki, dir)
    }

    /// The same, with more `[listeners.tls]` settings and a given PKI.
    fn start_full(
        upstream: SocketAddr,
        routes: &str,
        proxy: &str,
        listener: &str,
        tls: &str,
        pki: TestPki,
        dir: tempfile::TempDir,
    ) -> Shield {
        let config = format!(
            r#"
[fastpath]
enabled = false

[proxy]
max_body_bytes = 1024
header_timeout = "1s"
{proxy}

[[listeners]]
bind = "127.0.0.1:0"
redirect = {{ bind = "127.0.0.1:0" }}
{listener}
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]
{tls}

[[upstreams]]
name = "api"
url = "http://{upstream}"

[[upstreams]]
name = "down"
url = "http://127.0.0.1:1"
connect_timeout = "1s"

{routes}
"#,
            cert = pki.cert.display(),
            key = pki.key.display(),
        );
        let path = dir.path().join("api-shield.toml");
        std::fs::write(&path, config).unwrap();
        let daemon = Daemon::start(None, &path).unwrap_or_else(|e| panic!("{e}"));
        let ready = daemon
            .log
            .iter()
            .find(|l| l.contains("\"message\":\"ready\""))
            .unwrap()
            .clone();
        let json: serde_json::Value = serde_json::from_str(&ready).unwrap();
        let listening = json["listening"].as_str().unwrap().to_owned();
        let addr = |suffix: &str| -> SocketAddr {
            listening
                .split(',')
                .find_map(|item| item.strip_prefix(&format!("listener-0{suffix}=")))
                .unwrap_or_else(|| panic!("no listener-0{suffix} in {listening}"))
                .parse()
                .unwrap()
        };
        Shield {
            https: addr(""),
            http: addr("-redirect"),
            daemon,
            pki,
            _dir: dir,
        }
    }

    /// A fresh TLS connection to the HTTPS listener (SNI `localhost`), offering `version`.
    async fn tls(
        &self,
        version: Version,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(self.https).await?;
        tokio_rustls::TlsConnector::from(client_config(&self.pki.ca, version))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                tcp,
            )
            .await
    }

    async fn send(&self, version: Version, request: Request<Full<Bytes>>) -> support::https::Reply {
        send(
            self.https,
            client_config(&self.pki.ca, version),
            version,
            request,
        )
        .await
    }
}

const ROUTES: &str = r#"
[[routes]]
name = "users"
path = "/api/v1/users/{id}"
methods = ["GET", "PUT"]
upstream = "api"

[[routes]]
name = "public"
path = "/public/*"
upstream = "api"

[[routes]]
name = "broken"
path = "/broken"
upstream = "down"

[[routes]]
name = "cors"
path = "/cors/*"
methods = ["GET", "PUT"]
upstream = "api"
[routes.cors]
origins = ["https://app.example.com", "https://*.tenant.example"]
headers = ["content-type"]
expose = ["x-request-id"]
credentials = true
max_age = "10m"
"#;

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

/// A request with these extra headers.
fn with_headers(
    mut request: Request<Full<Bytes>>,
    headers: &[(&'static str, &str)],
) -> Request<Full<Bytes>> {
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}

fn with_origin(method: &str, target: &str, origin: &str) -> Request<Full<Bytes>> {
    let mut request = get(method, target);
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    request
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
async fn plain_http_only_redirects_and_never_sends_hsts() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let tcp = tokio::net::TcpStream::connect(shield.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let reply = sender
        .send_request(get("GET", "/api/v1/users/1?x=2"))
        .await
        .unwrap();
    assert_eq!(reply.status(), 308);
    assert_eq!(
        reply.headers()["location"],
        format!(
            "https://localhost:{}/api/v1/users/1?x=2",
            shield.https.port()
        )
        .as_str()
    );
    assert!(reply.headers().get("strict-transport-security").is_none());
    assert!(upstream.seen().is_empty());
    let reply = shield
        .send(Version::H1, get("GET", "/api/v1/users/1"))
        .await;
    assert!(reply.headers.get("strict-transport-security").is_some());
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
async fn an_unreachable_upstream_gives_502_problem_json() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let reply = shield.send(Version::H1, get("GET", "/broken")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    let body = reply.json();
    assert_eq!(
        body["type"],
        "https://api-shield.dev/problems/upstream-unavailable"
    );
    assert!(
        !reply.body.windows(9).any(|w| w == b"127.0.0.1"),
        "no internals in the problem"
    );
    drop(shield.daemon);
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
async fn certificate_reload_serves_new_connections_without_dropping_open_ones() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start(upstream.addr, ROUTES);
    let config = client_config(&shield.pki.ca, Version::H2);
    let (mut open, first) = support::https::connect_h2(shield.https, config).await;
    let reply = open
        .send_request(get("GET", "https://localhost/public/1"))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);

    let second = shield.pki.issue();
    assert_ne!(first, second);
    nix::sys::signal::kill(shield.daemon.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    shield
        .daemon
        .wait_for("certificates reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    // A fresh client config: no TLS session to resume, so the server must show its certificate.
    let fresh = client_config(&shield.pki.ca, Version::H2);
    let (_, served) = support::https::connect_h2(shield.https, fresh).await;
    assert_eq!(served, second, "new connections get the new certificate");
    let reply = open
        .send_request(get("GET", "https://localhost/public/2"))
        .await
        .unwrap();
    assert_eq!(reply.status(), 200, "the open connection is still served");
    assert_eq!(upstream.seen().len(), 2);
}

/// A ClientHello as an old or weak client sends it: `version` in the hello, these suites.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(version.to_be_bytes());
    body.extend([0x42u8; 32]);
    body.push(0);
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend(suite.to_be_bytes());
    }
    body.extend([1, 0]);
    let mut ext = Vec::new();
    let name = b"localhost";
    let mut sni = Vec::new();
    sni.extend(((name.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    for (kind, data) in [
        (0x0000u16, sni),
        (0x000a, vec![0, 4, 0x00, 0x1d, 0x00, 0x17]),
        (0x000b, vec![1, 0]),
        (0x000d, vec![0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]),
    ] {
        ext.extend(kind.to_be_bytes());
        ext.extend((data.len() as u16).to_be_bytes());
        ext.extend(data);
    }
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// The first record the server answers a hello with: (content type, first bytes).
async fn first_record(addr: SocketAddr, hello: &[u8]) -> (u8, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut buf = [0u8; 7];
    tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .expect("the server answers")
        .unwrap();
    (buf[0], buf.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_and_weak_suites_are_refused() {
    const ALERT: u8 = 0x15;
    const HANDSHAKE: u8 = 0x16;
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    // Control: a TLS 1.2 hello with an AEAD suite for the server's ECDSA key gets a ServerHello.
    let (kind, _) = first_record(shield.https, &client_hello(0x0303, &[0xc02b])).await;
    assert_eq!(kind, HANDSHAKE);
    // TLS 1.1, even with good suites: protocol_version alert.
    let (kind, bytes) = first_record(
        shield.https,
        &client_hello(0x0302, &[0xc02b, 0xc009, 0x002f]),
    )
    .await;
    assert_eq!(kind, ALERT, "{bytes:?}");
    assert_eq!(bytes[6], 70, "protocol_version");
    // TLS 1.2 with only CBC and RSA-key-exchange suites: handshake_failure.
    let (kind, bytes) = first_record(
        shield.https,
        &client_hello(0x0303, &[0xc009, 0xc013, 0x002f, 0x0035, 0x000a]),
    )
    .await;
    assert_eq!(kind, ALERT, "{bytes:?}");
    assert_eq!(bytes[6], 40, "handshake_failure");
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
    assert_eq!(shield.send(Version::H1, many).await.status, 431);
    let mut big = get("GET", "/public/x");
    big.headers_mut()
        .insert("x-big", "a".repeat(10_000).parse().unwrap());
    assert_eq!(shield.send(Version::H1, big).await.status, 431);
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
    let shield = Shield::start_with(upstream.addr, ROUTES, "max_connections_per_ip = 2");
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
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let tls = format!("client_ca = \"{}\"", pki.ca_file.display());
    let shield = Shield::start_full(upstream.addr, ROUTES, "", "", &tls, pki, dir);
    let identity = shield.pki.client_identity();
    let with_cert = support::https::client_config_with(&shield.pki.ca, Version::H1, Some(identity));
    let reply = send(
        shield.https,
        with_cert,
        Version::H1,
        get("GET", "/public/x"),
    )
    .await;
    assert_eq!(reply.status, 200);
    // Without a certificate, or with one from another CA, the request is never served.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestPki::new(other_dir.path());
    for identity in [None, Some(other.client_identity())] {
        let config = support::https::client_config_with(&shield.pki.ca, Version::H1, identity);
        let tcp = tokio::net::TcpStream::connect(shield.https).await.unwrap();
        let outcome: Result<_, std::io::Error> = async {
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            sender
                .send_request(get("GET", "/public/y"))
                .await
                .map_err(std::io::Error::other)
        }
        .await;
        assert!(
            outcome.is_err(),
            "served without a valid client certificate"
        );
    }
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_upstreams_are_validated_against_the_configured_ca() {
    let plain = Upstream::start().await;
    let up_dir = tempfile::tempdir().unwrap();
    let up_pki = TestPki::new(up_dir.path());
    let secure = Upstream::start_with(Some(up_pki.server_config())).await;
    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong = TestPki::new(wrong_dir.path());
    let routes = format!(
        r#"
[[upstreams]]
name = "secure"
url = "https://localhost:{port}"
ca = "{ca}"

[[upstreams]]
name = "mistrusted"
url = "https://localhost:{port}"
ca = "{wrong}"

[[routes]]
name = "secure"
path = "/secure/*"
upstream = "secure"

[[routes]]
name = "mistrusted"
path = "/mistrusted/*"
upstream = "mistrusted"
"#,
        port = secure.addr.port(),
        ca = up_pki.ca_file.display(),
        wrong = wrong.ca_file.display(),
    );
    let shield = Shield::start(plain.addr, &routes);
    let reply = shield.send(Version::H2, get("GET", "/secure/a")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, "upstream:/secure/a");
    let reply = shield.send(Version::H1, get("GET", "/mistrusted/a")).await;
    assert_eq!(
        reply.status, 502,
        "an upstream certificate from an unknown CA is refused"
    );
    assert_eq!(secure.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_such_as_websocket_are_passed_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let tls = shield.tls(Version::H1).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn.with_upgrades());
    let request = with_headers(
        get("GET", "/public/socket"),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    );
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    let mut upgraded = hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap());
    upgraded.write_all(b"ping over the splice").await.unwrap();
    let mut echoed = [0u8; 20];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        upgraded.read_exact(&mut echoed),
    )
    .await
    .expect("echo arrives")
    .unwrap();
    assert_eq!(&echoed, b"ping over the splice");
    let seen = &upstream.seen();
    assert!(seen.is_empty() || seen.iter().all(|s| s.target == "/public/socket"));
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
async fn proxy_protocol_names_the_client_from_trusted_balancers_only() {
    use tokio::io::AsyncWriteExt;
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let shield = Shield::start_full(
        upstream.addr,
        ROUTES,
        "trusted_proxies = [\"127.0.0.0/8\"]",
        "proxy_protocol = true",
        "",
        pki,
        dir,
    );
    let send_through = |header: &'static [u8]| {
        let ca = shield.pki.ca.clone();
        let addr = shield.https;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(header).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(client_config(&ca, Version::H1))
                .connect(
                    rustls::pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            let mut request = get("GET", "/public/pp");
            request
                .headers_mut()
                .insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
            sender
                .send_request(request)
                .await
                .map_err(std::io::Error::other)
        }
    };
    let reply = send_through(b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\n")
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(
        upstream.seen()[0].headers["x-forwarded-for"],
        "198.51.100.7",
        "the client the balancer names, not what the client claims"
    );
    // Without the header the connection is refused.
    assert!(send_through(b"").await.is_err());
    assert_eq!(upstream.seen().len(), 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_upstream_takes_what_no_route_matches() {
    let upstream = Upstream::start().await;
    let shield = Shield::start_with(upstream.addr, ROUTES, "default_upstream = \"api\"");
    let reply = shield.send(Version::H1, get("GET", "/elsewhere/./x")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body, "upstream:/elsewhere/x",
        "normalised like any other request"
    );
    // A route that matches with another method still answers 405.
    assert_eq!(
        shield
            .send(Version::H1, get("DELETE", "/api/v1/users/1"))
            .await
            .status,
        405
    );
    assert_eq!(upstream.seen().len(), 1);
}
