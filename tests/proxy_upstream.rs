//! The L7 proxy's upstream side end to end, with the real daemon binary, a real upstream and
//! TLS clients: upstream connections kept alive and reused, an unreachable upstream answered
//! with 502 problem+json and one that never answers with 504, upgrades (WebSocket) spliced
//! through, the default upstream, slow and abandoned bodies, and exactly one access-log line
//! for every request parsed (pipelined, upgraded, refused, timed out, aborted). The client
//! side is in proxy.rs, TLS itself in proxy_tls.rs.

use crate::support;

use support::{
    https::{get, Upstream, Version},
    shield::{with_headers, Shield, ROUTES},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    for (i, version) in [Version::H1, Version::H2]
        .into_iter()
        .cycle()
        .take(10)
        .enumerate()
    {
        let reply = shield
            .send(version, get("GET", &format!("/api/v1/users/{i}")))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body, format!("upstream:/api/v1/users/{i}"));
    }
    // Each request came on a client connection of its own, one after the other: the upstream
    // connection of the first is idle again for the next (two at most, should a request be
    // sent before the connection of the one before has been given back).
    assert!(
        upstream.connections() <= 2,
        "{} upstream connections for 10 requests",
        upstream.connections()
    );
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
async fn an_upstream_that_never_answers_gives_504_problem_json() {
    use tokio::io::AsyncReadExt;
    let upstream = Upstream::start().await;
    // An upstream that takes the request and never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap();
    let (received_tx, received_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(async move {
        let (mut socket, _) = stalled.accept().await.unwrap();
        let mut head = vec![0u8; 4096];
        let n = socket.read(&mut head).await.unwrap();
        received_tx
            .send(String::from_utf8_lossy(&head[..n]).into_owned())
            .unwrap();
        // Held open, unanswered, until the test ends.
        let _ = socket.read(&mut head).await;
    });
    let routes = format!(
        "{ROUTES}\n[[upstreams]]\nname = \"stalled\"\nurl = \"http://{stalled_addr}\"\n\
         response_timeout = \"300ms\"\n\n[[routes]]\nname = \"stalled\"\npath = \"/stalled\"\n\
         upstream = \"stalled\"\n"
    );
    let shield = Shield::start(upstream.addr, &routes);
    let reply = shield.send(Version::H1, get("GET", "/stalled")).await;
    assert_eq!(reply.status, 504, "{:?}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/problem+json");
    assert_eq!(
        reply.json()["type"],
        "https://api-shield.dev/problems/upstream-timeout"
    );
    let head = received_rx.await.expect("the upstream got the request");
    assert!(head.starts_with("GET /stalled HTTP/1.1\r\n"), "{head}");
    holder.abort();
    drop(shield.daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_such_as_websocket_are_passed_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let mut upgraded = websocket(&shield, "/public/socket", &[]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_abandoned_body_is_the_clients_fault_never_the_upstreams() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let mut shield = Shield::start_with(upstream.addr, ROUTES, "body_timeout = \"1s\"");
    // A body that stops arriving: 408 at the body timeout (not the upstream's 30 s response
    // timeout, and not 504).
    let mut tls = shield.tls(Version::H1).await.unwrap();
    tls.write_all(
        b"POST /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: slow-body\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut buffer))
            .await
            .expect("an answer within the bound")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{text}"
    );
    drop(tls);
    // A client that announces 38 bytes, sends 35 and closes: a client abort.
    let mut tls = shield.tls(Version::H1).await.unwrap();
    tls.write_all(
        b"POST /public/gone HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: gone-body\r\nContent-Length: 38\r\n\r\n01234567890123456789012345678901234",
    )
    .await
    .unwrap();
    tls.shutdown().await.unwrap();
    drop(tls);
    for id in ["slow-body", "gone-body"] {
        shield
            .daemon
            .wait_for(
                &format!("\"request_id\":\"{id}\""),
                std::time::Duration::from_secs(10),
            )
            .unwrap();
    }
    let line = |id: &str| -> serde_json::Value {
        let line = shield
            .daemon
            .log
            .iter()
            .find(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
            .unwrap();
        serde_json::from_str(line).unwrap()
    };
    let slow = line("slow-body");
    assert_eq!(slow["status"], 408, "{slow}");
    assert_eq!(slow["denial"], "request-timeout", "{slow}");
    let gone = line("gone-body");
    assert_eq!(gone["status"], 499, "{gone}");
    assert_eq!(gone["denial"], "client-closed-request", "{gone}");
    // Counted against the client, never the upstream; no warning blames it.
    let samples = support::admin::scrape(shield.admin).await;
    let value = |key: &str| samples.get(key).copied().unwrap_or(0.0);
    assert_eq!(
        value("api_shield_client_errors_total{kind=body_timeout}"),
        1.0
    );
    assert_eq!(value("api_shield_client_errors_total{kind=aborted}"), 1.0);
    for kind in ["timeout", "unavailable"] {
        assert_eq!(
            value(&format!(
                "api_shield_upstream_errors_total{{kind={kind},upstream=api}}"
            )),
            0.0,
            "{kind}"
        );
    }
    shield.daemon.stop();
    assert!(
        !shield
            .daemon
            .log
            .iter()
            .any(|l| l.contains("upstream request failed")),
        "{:?}",
        shield.daemon.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_parsed_gets_exactly_one_access_log_line() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    let mut shield = Shield::start_with(upstream.addr, ROUTES, "body_timeout = \"1s\"");
    let mut sent = Vec::new();
    // Pipelined: three requests in one write, the second refused (no route), the last closing.
    let mut tls = shield.tls(Version::H1).await.unwrap();
    tls.write_all(
        b"GET /public/p1 HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: piped-1\r\n\r\n\
          GET /nowhere HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: piped-2\r\n\r\n\
          GET /public/p3 HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: piped-3\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answers = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut answers),
    )
    .await
    .expect("the pipeline is answered and closed")
    .unwrap();
    let answers = String::from_utf8_lossy(&answers);
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &answers[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200"], "{answers}");
    sent.extend([("piped-1", 200), ("piped-2", 404), ("piped-3", 200)]);
    // Pipelined and abandoned: two requests, then the connection closed without reading.
    // Whatever the shield parsed of them gets its line (checked below against the upstream).
    let mut tls = shield.tls(Version::H1).await.unwrap();
    tls.write_all(
        b"GET /public/g1 HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: gone-1\r\n\r\n\
          GET /public/g2 HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: gone-2\r\n\r\n",
    )
    .await
    .unwrap();
    tls.shutdown().await.unwrap();
    drop(tls);
    // Upgraded: a WebSocket handshake answered 101, then bytes through the splice.
    let mut upgraded = websocket(&shield, "/public/socket", &[("x-request-id", "upgraded")]).await;
    upgraded.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    upgraded.read_exact(&mut echoed).await.unwrap();
    drop(upgraded);
    sent.push(("upgraded", 101));
    // Refused by policy over HTTP/2 (a repeated decided header), and a plain one beside it.
    for (id, request, status) in [
        (
            "h2-refused",
            with_headers(
                get("GET", "/cors/x"),
                &[
                    ("origin", "https://app.example.com"),
                    ("origin", "https://evil.example"),
                ],
            ),
            400,
        ),
        ("h2-served", get("GET", "/public/h2"), 200),
        ("h2-unreachable", get("GET", "/broken"), 502),
    ] {
        let request = with_headers(request, &[("x-request-id", id)]);
        assert_eq!(
            shield.send(Version::H2, request).await.status,
            status,
            "{id}"
        );
        sent.push((id, status));
    }
    // Timed out: a body that stops arriving (408), and aborted: a body cut short (499).
    for (id, cut) in [("timed-out", false), ("aborted", true)] {
        let mut tls = shield.tls(Version::H1).await.unwrap();
        tls.write_all(
            format!(
                "POST /public/body HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {id}\r\n\
                 Content-Length: 100\r\n\r\n0123456789"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        if cut {
            tls.shutdown().await.unwrap();
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tls.read_to_end(&mut rest),
        )
        .await
        .expect("the shield ends the exchange");
        sent.push((id, if cut { 499 } else { 408 }));
    }
    for (id, _) in &sent {
        shield
            .daemon
            .wait_for(
                &format!("\"request_id\":\"{id}\""),
                std::time::Duration::from_secs(10),
            )
            .unwrap();
    }
    // Stopped, so that every line the daemon would write is written.
    shield.daemon.stop();
    let access: Vec<serde_json::Value> = shield
        .daemon
        .log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect();
    let lines_of = |id: &str| access.iter().filter(|l| l["request_id"] == id).count();
    let reached: Vec<String> = upstream
        .seen()
        .iter()
        .filter_map(|s| s.headers.get("x-request-id"))
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let mut abandoned = 0;
    for id in ["gone-1", "gone-2"] {
        let lines = lines_of(id);
        assert!(lines <= 1, "{id}: {lines} lines");
        if reached.iter().any(|r| r == id) {
            assert_eq!(lines, 1, "{id} reached the upstream: {access:#?}");
        }
        abandoned += lines;
    }
    assert_eq!(access.len(), sent.len() + abandoned, "{access:#?}");
    for (id, status) in &sent {
        let lines: Vec<_> = access.iter().filter(|l| l["request_id"] == *id).collect();
        assert_eq!(lines.len(), 1, "{id}: {lines:?}");
        assert_eq!(lines[0]["status"], *status, "{id}: {lines:?}");
    }
}

/// A WebSocket handshake through the shield (asserted answered 101 with `Upgrade: websocket`),
/// with `extra` headers; the upgraded connection.
async fn websocket(
    shield: &Shield,
    target: &str,
    extra: &[(&'static str, &str)],
) -> hyper_util::rt::TokioIo<hyper::upgrade::Upgraded> {
    let tls = shield.tls(Version::H1).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn.with_upgrades());
    let mut headers = vec![("connection", "upgrade"), ("upgrade", "websocket")];
    headers.extend_from_slice(extra);
    let response = sender
        .send_request(with_headers(get("GET", target), &headers))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["upgrade"], "websocket");
    hyper_util::rt::TokioIo::new(hyper::upgrade::on(response).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_access_log_holds_one_line_per_request_and_reopens_on_sigusr1() {
    let upstream = Upstream::start().await;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("access.log");
    let mut shield = Shield::start_edited(upstream.addr, ROUTES, |config| {
        format!(
            "{config}\n[access_log]\nsink = \"file\"\npath = \"{}\"\nformat = \"text\"\n",
            path.display()
        )
    });
    for n in 0..30 {
        send_numbered(&shield, n, Version::H1).await;
    }
    // logrotate's `create` way: the file is moved, then the daemon told to reopen it.
    let rotated = logs.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    shield.daemon.signal(nix::sys::signal::Signal::SIGUSR1);
    shield
        .daemon
        .wait_for(
            "SIGUSR1: reopening the access log",
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    for n in 30..50 {
        send_numbered(&shield, n, Version::H2).await;
    }
    let served = support::admin::scrape(shield.admin).await;
    let requests: f64 = served
        .iter()
        .filter(|(key, _)| key.starts_with("api_shield_requests_total{"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests, 50.0);
    // Stopped: the pending lines are written before the process ends.
    let exit = shield.daemon.stop();
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}");
    let ids_in = |file: &std::path::Path| -> Vec<String> {
        let text = std::fs::read_to_string(file).unwrap();
        text.lines()
            .map(|line| {
                assert!(!line.contains('\u{1b}'), "colour codes in a file: {line:?}");
                assert!(line.contains(" access "), "{line}");
                let field = |key: &str| {
                    line.split(' ')
                        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                        .unwrap_or_else(|| panic!("no {key} in {line}"))
                        .to_owned()
                };
                let id = field("request_id");
                let n: usize = id.strip_prefix("log-").unwrap().parse().unwrap();
                let status = if n.is_multiple_of(3) { "404" } else { "200" };
                assert_eq!(field("status"), status, "{line}");
                id
            })
            .collect()
    };
    let expect = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|n| format!("log-{n}")).collect()
    };
    assert_eq!(ids_in(&rotated), expect(0..30));
    assert_eq!(ids_in(&path), expect(30..50));
}

/// Request `n` of a numbered series (`x-request-id: log-N`): every third to a path no route
/// serves (404), the others to the upstream (200).
async fn send_numbered(shield: &Shield, n: usize, version: Version) {
    let (status, target) = if n.is_multiple_of(3) {
        (404, format!("/nowhere/{n}"))
    } else {
        (200, format!("/api/v1/users/{n}"))
    };
    let request = with_headers(
        get("GET", &target),
        &[("x-request-id", &format!("log-{n}"))],
    );
    let reply = shield.send(version, request).await;
    assert_eq!(reply.status, status, "{target}");
}
