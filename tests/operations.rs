//! Running it as a service: `/metrics` parsed by a real Prometheus text-format parser, with
//! every L7 metric present and moving with traffic; `/healthz` and `/readyz`; config reload on
//! SIGHUP under continuous load (nothing lost), a bad reload changing nothing, a certificate
//! swap seen by new connections.

use crate::support;

use std::time::Duration;

use nix::sys::signal::Signal;
use support::{
    admin::{admin_get, scrape, value},
    https::{get, Upstream, Version},
    shield::Shield,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = r#"
[[routes]]
name = "orders"
path = "/orders/*"
upstream = "api"
rate_limit = { rate = "2 per minute", burst = 2 }

[[routes]]
name = "secure"
path = "/secure/*"
upstream = "api"
[routes.auth]
api_key = true

[[routes]]
name = "broken"
path = "/broken"
upstream = "down"

[[routes]]
name = "old"
path = "/old"
upstream = "api"
[routes.deprecation]
deprecated = "2025-01-01T00:00:00Z"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text_and_move_with_traffic() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    assert_eq!(admin_get(shield.admin, "/healthz").await.0, 200);
    assert_eq!(admin_get(shield.admin, "/readyz").await.0, 200);
    assert_eq!(admin_get(shield.admin, "/nope").await.0, 404);
    let before = scrape(shield.admin).await;
    assert_eq!(value(&before, "api_shield_build_info{version=0.1.0}"), 1.0);
    for _ in 0..3 {
        shield.send(Version::H1, get("GET", "/orders/1")).await;
    }
    shield.send(Version::H2, get("GET", "/secure/x")).await;
    shield.send(Version::H1, get("GET", "/broken")).await;
    shield.send(Version::H1, get("GET", "/old")).await;
    shield.send(Version::H1, get("GET", "/nowhere")).await;
    // A failed TLS handshake: plain bytes on the TLS port.
    let mut tcp = tokio::net::TcpStream::connect(shield.https).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink).await;
    // The server counts the failed handshake after closing the socket: wait for the count.
    let tls_key = "api_shield_tls_handshake_failures_total{listener=listener-0}";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let after = loop {
        let samples = scrape(shield.admin).await;
        if value(&samples, tls_key) > value(&before, tls_key)
            || std::time::Instant::now() > deadline
        {
            break samples;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expect = [
        (
            "api_shield_requests_total{code=200,method=GET,route=orders}",
            2.0,
        ),
        (
            "api_shield_requests_total{code=429,method=GET,route=orders}",
            1.0,
        ),
        (
            "api_shield_requests_total{code=401,method=GET,route=secure}",
            1.0,
        ),
        (
            "api_shield_requests_total{code=502,method=GET,route=broken}",
            1.0,
        ),
        (
            "api_shield_requests_total{code=404,method=GET,route=none}",
            1.0,
        ),
        (
            "api_shield_denials_total{reason=rate-limited,route=orders}",
            1.0,
        ),
        (
            "api_shield_denials_total{reason=unauthenticated,route=secure}",
            1.0,
        ),
        ("api_shield_denials_total{reason=not-found,route=none}", 1.0),
        (
            "api_shield_upstream_errors_total{kind=unavailable,upstream=down}",
            1.0,
        ),
        ("api_shield_deprecated_requests_total{deprecation=old}", 1.0),
        (
            "api_shield_tls_handshake_failures_total{listener=listener-0}",
            1.0,
        ),
        (
            "api_shield_request_duration_seconds_count{route=orders}",
            3.0,
        ),
        (
            "api_shield_upstream_response_seconds_count{upstream=api}",
            3.0,
        ),
    ];
    for (key, expected) in expect {
        let was = before.get(key).copied().unwrap_or(0.0);
        assert_eq!(value(&after, key) - was, expected, "{key}");
    }
    for present in [
        "process_resident_memory_bytes{}",
        "process_open_fds{}",
        "api_shield_config_last_reload_success_timestamp_seconds{}",
    ] {
        assert!(value(&after, present) > 0.0, "{present}");
    }
    // No label carries what a client sent.
    let (_, text) = admin_get(shield.admin, "/metrics").await;
    assert!(
        !text.contains("nowhere") && !text.contains("127.0.0.1"),
        "client data in labels"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_under_load_and_a_bad_reload_changes_nothing() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start(
        upstream.addr,
        "# ROUTES\n[[routes]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"api\"\n",
    );
    assert_eq!(
        shield.send(Version::H1, get("GET", "/b/1")).await.status,
        404
    );
    // Continuous load on /a while the config is reloaded three times.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (https, ca, stop, done) = (
            shield.https,
            shield.pki.ca.clone(),
            stop.clone(),
            done.clone(),
        );
        load.push(tokio::spawn(async move {
            let version = if worker % 2 == 0 {
                Version::H1
            } else {
                Version::H2
            };
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let reply = support::https::send(
                    https,
                    support::https::client_config(&ca, version),
                    version,
                    get("GET", "/a/x"),
                )
                .await;
                statuses.push(reply.status.as_u16());
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            statuses
        }));
    }
    // Each reload happens with requests completing around it: it waits for three more to be
    // answered first (a reload takes milliseconds, so without this the load could miss it).
    let answered_more = |than: usize| {
        let done = done.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while done.load(std::sync::atomic::Ordering::SeqCst) < than + 3 {
                assert!(std::time::Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    for round in 1..=3 {
        answered_more(done.load(std::sync::atomic::Ordering::SeqCst)).await;
        shield.write_routes(
            &format!(
                "[[routes]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"api\"\n[[routes]]\nname = \"b{round}\"\npath = \"/b/*\"\nupstream = \"api\"\n"
            ),
        );
        shield.daemon.signal(Signal::SIGHUP);
        shield
            .daemon
            .wait_for_count("config reloaded", round, Duration::from_secs(10))
            .unwrap();
    }
    answered_more(done.load(std::sync::atomic::Ordering::SeqCst)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for task in load {
        let statuses = task.await.unwrap();
        total += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    assert!(total >= 8, "only {total} requests ran during the reloads");
    assert_eq!(
        shield.send(Version::H2, get("GET", "/b/1")).await.status,
        200
    );
    // A bad config: refused with file, line and key; the running one stays.
    shield.write_routes("[[routes]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"nowhere\"\n");
    shield.daemon.signal(Signal::SIGHUP);
    shield
        .daemon
        .wait_for("config reload refused", Duration::from_secs(10))
        .unwrap();
    let refusal = shield
        .daemon
        .log
        .iter()
        .find(|l| l.contains("config reload refused"))
        .unwrap()
        .clone();
    assert!(
        refusal.contains("api-shield.toml:") && refusal.contains("routes[0].upstream"),
        "{refusal}"
    );
    assert_eq!(
        shield.send(Version::H1, get("GET", "/b/1")).await.status,
        200
    );
    // A valid config whose step after compiling fails (its control socket cannot be bound:
    // the directory is a file): the routes it compiled are not served, the socket stays.
    let blocker = shield.config.with_file_name("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let text = std::fs::read_to_string(&shield.config).unwrap();
    let base = text.split("# ROUTES").next().unwrap().replace(
        &format!("socket = \"{}\"", shield.control.display()),
        &format!("socket = \"{}\"", blocker.join("control.sock").display()),
    );
    std::fs::write(
        &shield.config,
        format!("{base}# ROUTES\n[[routes]]\nname = \"c\"\npath = \"/c/*\"\nupstream = \"api\"\n"),
    )
    .unwrap();
    shield.daemon.signal(Signal::SIGHUP);
    shield
        .daemon
        .wait_for_count("config reload refused", 2, Duration::from_secs(10))
        .unwrap();
    let refusal = shield
        .daemon
        .log
        .iter()
        .rfind(|l| l.contains("config reload refused"))
        .unwrap()
        .clone();
    assert!(refusal.contains("not-a-directory"), "{refusal}");
    assert_eq!(
        shield.send(Version::H1, get("GET", "/c/1")).await.status,
        404
    );
    assert_eq!(
        shield.send(Version::H1, get("GET", "/b/1")).await.status,
        200
    );
    assert!(shield.control.exists());
    let samples = scrape(shield.admin).await;
    assert_eq!(
        value(&samples, "api_shield_config_reloads_total{result=success}"),
        3.0
    );
    assert_eq!(
        value(&samples, "api_shield_config_reloads_total{result=failure}"),
        2.0
    );
}

#[test]
fn the_service_manager_hears_ready_reloading_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = dir.path().join("api-shield.toml");
    std::fs::write(
        &config,
        "[fastpath]\nenabled = false\n[admin]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut daemon = support::daemon::Daemon::start_with_env(
        None,
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let next = |wanted: &str| -> String {
        let mut buffer = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buffer).expect("a notification");
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            if message.lines().any(|l| l == wanted) {
                return message;
            }
        }
    };
    next("READY=1");
    next("WATCHDOG=1");
    daemon.signal(Signal::SIGHUP);
    let reloading = next("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = next("READY=1");
    assert!(
        ready.contains("STATUS=serving (config reloaded)"),
        "{ready}"
    );
    daemon.signal(Signal::SIGTERM);
    next("STOPPING=1");
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_in_flight_and_refuses_new_connections() {
    let (slow, release, mut arrived) = gated_upstream().await;
    let mut shield = Shield::start_with(
        slow,
        "[[routes]]\nname = \"slow\"\npath = \"/slow\"\nupstream = \"api\"\n",
        "drain_timeout = \"10s\"",
    );
    let (https, ca) = (shield.https, shield.pki.ca.clone());
    let in_flight = tokio::spawn(async move {
        support::https::send(
            https,
            support::https::client_config(&ca, Version::H1),
            Version::H1,
            get("GET", "/slow"),
        )
        .await
    });
    arrived.recv().await.unwrap();
    shield.daemon.signal(Signal::SIGTERM);
    shield
        .daemon
        .wait_for("\"message\":\"stopping\"", Duration::from_secs(5))
        .unwrap();
    // New connections are refused while the old exchange finishes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(shield.https).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.notify_one();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"late");
    shield
        .daemon
        .wait_for("connections drained", Duration::from_secs(10))
        .unwrap();
    shield
        .daemon
        .wait_for("\"message\":\"stopped\"", Duration::from_secs(10))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_goes_away_still_gets_its_access_log_line() {
    let (slow, release, mut arrived) = gated_upstream().await;
    let mut shield = Shield::start(
        slow,
        "[[routes]]\nname = \"slow\"\npath = \"/slow\"\nupstream = \"api\"\n",
    );
    for version in [Version::H1, Version::H2] {
        let id = format!("gone-{version:?}");
        let mut tls = shield.tls(version).await.unwrap();
        if version == Version::H1 {
            tls.write_all(
                format!("GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Request-Id: {id}\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        } else {
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await
            .unwrap();
            let driver = tokio::spawn(conn);
            let mut request = get("GET", "https://localhost/slow");
            request
                .headers_mut()
                .insert("x-request-id", id.parse().unwrap());
            let pending = tokio::spawn(async move { sender.send_request(request).await });
            arrived.recv().await.unwrap();
            // The client goes away: its connection closes with the request unanswered.
            pending.abort();
            driver.abort();
            shield
                .daemon
                .wait_for(&format!("\"request_id\":\"{id}\""), Duration::from_secs(10))
                .unwrap();
            continue;
        }
        arrived.recv().await.unwrap();
        drop(tls);
        shield
            .daemon
            .wait_for(&format!("\"request_id\":\"{id}\""), Duration::from_secs(10))
            .unwrap();
    }
    release.notify_waiters();
    for version in ["H1", "H2"] {
        let line = shield
            .daemon
            .log
            .iter()
            .find(|l| l.contains(&format!("\"request_id\":\"gone-{version}\"")))
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(json["status"], 499, "{line}");
        assert_eq!(json["denial"], "client-closed-request", "{line}");
        assert_eq!(json["route"], "slow", "{line}");
        assert_eq!(json["target"], "access", "{line}");
    }
    let samples = support::admin::scrape(shield.admin).await;
    assert_eq!(
        value(
            &samples,
            "api_shield_requests_total{code=499,method=GET,route=slow}"
        ),
        2.0
    );
}

/// An upstream that answers `late` only when told to (`release`), saying on `arrived` when a
/// request reaches it.
async fn gated_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<tokio::sync::Notify>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use std::sync::Arc;
    let release = Arc::new(tokio::sync::Notify::new());
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let release = Arc::clone(&release);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (release, arrived_tx) = (Arc::clone(&release), arrived_tx.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let (release, arrived_tx) = (Arc::clone(&release), arrived_tx.clone());
                        async move {
                            let _ = arrived_tx.send(());
                            release.notified().await;
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from("late")),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    }
    (addr, release, arrived)
}
