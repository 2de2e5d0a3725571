//! HTTP desync and smuggling vectors on raw TLS connections to the running shield: each is
//! refused (400-class, or a reset HTTP/2 stream) or normalised, and the upstream sees either
//! nothing or exactly one well-formed request, never a smuggled second one. Also: an HTTP/2
//! rapid-reset flood, and an upstream resetting in the middle of a response.

use crate::support;

use std::time::Duration;

use support::{
    h2raw::{h2_frame, h2_headers},
    https::{Upstream, Version},
    shield::{Shield, ROUTES},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes `bytes` on a fresh HTTP/1.1-over-TLS connection and reads until the server closes or
/// a second passes after the first bytes of an answer.
async fn raw_h1(shield: &Shield, bytes: &[u8]) -> String {
    let mut tls = shield.tls(Version::H1).await.unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let wait = if answer.is_empty() { 5 } else { 1 };
        match tokio::time::timeout(Duration::from_secs(wait), tls.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_desync_vectors_are_refused_and_reach_nothing() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let long_target = format!("/public/{}", "a".repeat(20_000));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "two different Content-Lengths",
            b"POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello".to_vec(),
        ),
        (
            "obs-fold",
            b"GET /public/a HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n  b\r\n\r\n".to_vec(),
        ),
        (
            "bad chunk size",
            b"POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "header name with a space",
            b"GET /public/a HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n".to_vec(),
        ),
        (
            "NUL in a header value",
            b"GET /public/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\n\r\n".to_vec(),
        ),
        (
            "bare CR in a header value",
            b"GET /public/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\rb\r\n\r\n".to_vec(),
        ),
        (
            "authority-form target",
            b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n".to_vec(),
        ),
        (
            "over-long request line",
            format!("GET {long_target} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes(),
        ),
        (
            "HTTP/1.1 without Host (RFC 9112 section 3.2)",
            b"GET /public/a HTTP/1.1\r\nUser-Agent: t\r\n\r\n".to_vec(),
        ),
        (
            "two Host headers",
            b"GET /public/a HTTP/1.1\r\nHost: localhost\r\nHost: evil.test\r\n\r\n".to_vec(),
        ),
        (
            "Transfer-Encoding that is not chunked",
            b"POST /public/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\nxxxx".to_vec(),
        ),
    ];
    for (case, bytes) in &cases {
        let answer = raw_h1(&shield, bytes).await;
        let code = status(&answer);
        assert!((400..500).contains(&code), "{case}: {answer:?}");
        // Refused by the shield itself, even where the HTTP parser refused: a problem+json
        // answer with a request id, closing the connection.
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.contains("\r\ncontent-type: application/problem+json\r\n")
                && lower.contains("\r\nx-request-id: "),
            "{case}: {answer:?}"
        );
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let problem: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{case}: not JSON ({e}): {answer:?}"));
        assert_eq!(problem["status"], code, "{case}");
        assert!(
            upstream.seen().is_empty(),
            "{case} reached the upstream: {:?}",
            upstream.seen()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_chunked_never_smuggles_a_second_request() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    // The classic CL.TE pair: a front end reading Content-Length would see one request; one
    // reading chunked sees a second, smuggled one. The shield must not forward that second one.
    let answer = raw_h1(
        &shield,
        b"POST /public/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /public/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let code = status(&answer);
    let seen = upstream.seen();
    assert!(
        seen.iter().all(|s| !s.target.contains("smuggled")),
        "a smuggled request reached the upstream: {seen:?} ({answer:?})"
    );
    if code == 400 {
        assert!(seen.is_empty(), "{seen:?}");
    } else {
        // Normalised: exactly one request, sent upstream with one framing.
        assert_eq!(code, 200, "{answer:?}");
        assert_eq!(seen.len(), 1, "{seen:?}");
        let transfer = seen[0].headers.get("transfer-encoding");
        let length = seen[0].headers.get("content-length");
        assert!(
            transfer.is_none() || length.is_none(),
            "both framings forwarded: {:?}",
            seen[0].headers
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_form_target_is_normalised_to_one_origin_form_request() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let answer = raw_h1(
        &shield,
        b"GET https://localhost/public/./abs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].target, "/public/abs");
    assert_eq!(seen[0].headers["host"], "localhost");
}

/// Sends a raw HTTP/2 request and returns the type of the first frame about stream 1 (1:
/// HEADERS, 3: RST_STREAM) or 7 for a GOAWAY.
async fn raw_h2(shield: &Shield, fields: &[(&str, &str)]) -> u8 {
    raw_h2_answer(shield, fields).await.0
}

/// The same, with that frame's payload.
async fn raw_h2_answer(shield: &Shield, fields: &[(&str, &str)]) -> (u8, Vec<u8>) {
    let mut tls = shield.tls(Version::H2).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    out.extend_from_slice(&h2_headers(fields));
    tls.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            tls.read_exact(&mut head).await.unwrap();
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let kind = head[3];
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            tls.read_exact(&mut payload).await.unwrap();
            if kind == 0x7 || (stream == 1 && (kind == 0x1 || kind == 0x3)) {
                return (kind, payload);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no answer about stream 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_requests_with_connection_specific_headers_never_reach_http1_upstreams() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let base = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/public/h2"),
    ];
    for forbidden in [
        ("transfer-encoding", "chunked"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        let mut fields = base.to_vec();
        fields.push(forbidden);
        let kind = raw_h2(&shield, &fields).await;
        assert!(
            kind == 0x3 || kind == 0x7,
            "{forbidden:?}: answered with frame type {kind}"
        );
        assert!(
            upstream.seen().is_empty(),
            "{forbidden:?} reached the upstream"
        );
    }
    // The same request without them is served: the frames above were well-formed otherwise.
    assert_eq!(raw_h2(&shield, &base).await, 0x1);
    assert_eq!(upstream.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_naming_no_host_is_refused_and_one_with_host_only_is_served() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start(upstream.addr, ROUTES);
    // HPACK's static table gives `:status 400` as the one byte 0x8c and `:status 200` as 0x88,
    // the encoding hyper's HTTP/2 server uses for them.
    let nameless = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/public/nameless"),
    ];
    let (kind, block) = raw_h2_answer(&shield, &nameless).await;
    assert_eq!(kind, 0x1, "answered with HEADERS");
    assert_eq!(block.first(), Some(&0x8c), "400, not forwarded: {block:?}");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    // RFC 9113 section 8.3.1: Host may stand in for :authority; the upstream gets that host.
    let mut with_host = nameless.to_vec();
    with_host.push(("host", "localhost"));
    let (kind, block) = raw_h2_answer(&shield, &with_host).await;
    assert_eq!((kind, block.first()), (0x1, Some(&0x88)), "{block:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].headers["host"], "localhost");
    shield.daemon.stop();
    let refused: Vec<_> = shield
        .daemon
        .log
        .iter()
        .filter(|l| l.contains("\"target\":\"access\"") && l.contains("\"status\":400"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("\"denial\":\"bad-request\""),
        "{}",
        refused[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_is_cut_off_and_others_are_served() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let mut tls = shield.tls(Version::H2).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&h2_frame(0x4, 0, 0, &[]));
    let block = {
        let fields = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", "/public/reset"),
        ];
        h2_headers(&fields)[9..].to_vec()
    };
    // CVE-2023-44487: open a stream and cancel it at once, thousands of times.
    for n in 0..5_000u32 {
        let stream = 1 + 2 * n;
        out.extend_from_slice(&h2_frame(0x1, 0x4, stream, &block));
        out.extend_from_slice(&h2_frame(0x3, 0, stream, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = tls.write_all(&out).await;
    // The server ends the connection with a GOAWAY (or closes it).
    let mut goaway = false;
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if tls.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if tls.read_exact(&mut payload).await.is_err() {
                return;
            }
            if head[3] == 0x7 {
                goaway = true;
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the flooding connection is never ended");
    assert!(goaway, "closed without a GOAWAY");
    // Far fewer requests than streams opened reached the upstream, and others are served.
    assert!(
        upstream.seen().len() < 1_000,
        "{} requests forwarded",
        upstream.seen().len()
    );
    let reply = shield
        .send(Version::H2, support::https::get("GET", "/public/ok"))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_resetting_mid_response_ends_that_exchange_only() {
    // An upstream that sends a head promising 1000 bytes, 7 of them, and resets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let broken = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if support::https::read_request_head(&mut stream)
                    .await
                    .is_none()
                {
                    return;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial")
                    .await;
                // A zero linger closes with a reset at once (it does not block, unlike a
                // non-zero one, which is why tokio deprecates the call).
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
            });
        }
    });
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[upstreams]]\nname = \"resetting\"\nurl = \"http://{broken}\"\n\n[[routes]]\nname = \"resetting\"\npath = \"/resetting/*\"\nupstream = \"resetting\"\n{ROUTES}"
    );
    let shield = Shield::start(upstream.addr, &routes);
    let answer = raw_h1(
        &shield,
        b"GET /resetting/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    // The head had been forwarded; the body ends short and the connection is closed.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(body.len() < 1000, "{} body bytes", body.len());
    // The shield goes on serving.
    let reply = shield
        .send(Version::H1, support::https::get("GET", "/public/ok"))
        .await;
    assert_eq!(reply.status, 200);
}
