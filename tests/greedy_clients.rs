//! Slow and greedy clients against the running shield: thousands of idle connections, the
//! total connection limit, a client that stops reading a large response, HTTP/2 stream floods
//! and header blocks that decompress past the limit. Each test asserts the bound (connections
//! reaped, bytes buffered, streams admitted, memory) and that other clients keep being served.

use crate::support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use support::{
    admin::{scrape, value},
    h2raw::{get_fields, h2_frame, header_block, hpack_int, hpack_literal, preface, read_frame},
    https::{get, Upstream, Version},
    shield::{Shield, ROUTES},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Lets this process hold thousands of sockets (the daemon raises its own limit).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

async fn metric(shield: &Shield, key: &str) -> f64 {
    value(&scrape(shield.admin).await, key)
}

/// Polls `/metrics` until `key` satisfies `done`, for at most `limit`; returns the last value.
async fn wait_metric(
    shield: &Shield,
    key: &str,
    limit: Duration,
    done: impl Fn(f64) -> bool,
) -> f64 {
    let start = Instant::now();
    loop {
        let now = metric(shield, key).await;
        if done(now) || start.elapsed() > limit {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True once the peer has closed `stream` (end of file or reset); reads and drops what arrives.
async fn closed_by_peer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_reaped_and_others_are_served() {
    raise_fd_limit();
    let upstream = Upstream::start().await;
    let shield = Shield::start_with(
        upstream.addr,
        ROUTES,
        "request_timeout = \"2s\"\nidle_timeout = \"3s\"\nmax_connections_per_ip = 0",
    );
    let fds_before = metric(&shield, "process_open_fds{}").await;
    let idle_closed_before = metric(&shield, "api_shield_connections_idle_closed_total{}").await;

    // 2000 connections that never start TLS, and 100 that finish the handshake, speak HTTP/2's
    // preface and then say nothing.
    let mut raw = Vec::new();
    for _ in 0..2_000 {
        raw.push(tokio::net::TcpStream::connect(shield.https).await.unwrap());
    }
    let mut quiet = Vec::new();
    for _ in 0..100 {
        let mut tls = shield.tls(Version::H2).await.unwrap();
        tls.write_all(&preface()).await.unwrap();
        quiet.push(tls);
    }

    // Meanwhile, a real client is served.
    let reply = shield.send(Version::H2, get("GET", "/public/busy")).await;
    assert_eq!(reply.status, 200);

    // The shield closes every one of them: the raw ones at the handshake timeout, the quiet
    // ones at the idle timeout.
    let reaped = async {
        for mut stream in raw {
            assert!(closed_by_peer(&mut stream).await);
        }
        for mut stream in quiet {
            assert!(closed_by_peer(&mut stream).await);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reaped)
        .await
        .expect("idle connections were left open");
    let open = wait_metric(
        &shield,
        "api_shield_connections_open{}",
        Duration::from_secs(5),
        |v| v == 0.0,
    )
    .await;
    assert_eq!(open, 0.0, "connections still counted open");
    let idle_closed = metric(&shield, "api_shield_connections_idle_closed_total{}").await;
    assert!(
        idle_closed - idle_closed_before >= 100.0,
        "{} idle closes counted",
        idle_closed - idle_closed_before
    );
    // No descriptor leaked (a few may belong to pooled upstream connections).
    let fds_after = wait_metric(&shield, "process_open_fds{}", Duration::from_secs(5), |v| {
        v <= fds_before + 4.0
    })
    .await;
    assert!(
        fds_after <= fds_before + 4.0,
        "open descriptors {fds_before} before, {fds_after} after"
    );
    let reply = shield.send(Version::H1, get("GET", "/public/after")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_new_connections_are_closed_until_one_frees() {
    let upstream = Upstream::start().await;
    let shield = Shield::start_with(
        upstream.addr,
        ROUTES,
        "request_timeout = \"20s\"\nidle_timeout = \"30s\"\nmax_connections = 8",
    );
    let refused_before = metric(
        &shield,
        "api_shield_connections_refused_total{reason=total}",
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut tls = shield.tls(Version::H2).await.unwrap();
        tls.write_all(&preface()).await.unwrap();
        held.push(tls);
    }
    // The ninth is closed at accept: its handshake fails.
    assert!(shield.tls(Version::H1).await.is_err());
    let refused = metric(
        &shield,
        "api_shield_connections_refused_total{reason=total}",
    )
    .await;
    assert_eq!(refused - refused_before, 1.0);
    assert_eq!(metric(&shield, "api_shield_connections_open{}").await, 8.0);
    // One leaves; a place frees and the next client is served.
    drop(held.pop());
    let open = wait_metric(
        &shield,
        "api_shield_connections_open{}",
        Duration::from_secs(5),
        |v| v == 7.0,
    )
    .await;
    assert_eq!(open, 7.0);
    let reply = shield.send(Version::H1, get("GET", "/public/freed")).await;
    assert_eq!(reply.status, 200);
}

/// An upstream answering every request with a `size`-byte body written as fast as the proxy
/// takes it; counts the bytes the proxy accepted and notes when it hung up.
struct BigUpstream {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
    hung_up: Arc<AtomicBool>,
}

async fn big_upstream(size: u64) -> BigUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let hung_up = Arc::new(AtomicBool::new(false));
    let (count, ended) = (Arc::clone(&written), Arc::clone(&hung_up));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (count, ended) = (Arc::clone(&count), Arc::clone(&ended));
            tokio::spawn(async move {
                if support::https::read_request_head(&mut stream)
                    .await
                    .is_none()
                {
                    return;
                }
                let start = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                stream.write_all(start.as_bytes()).await.unwrap();
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0u64;
                while sent < size {
                    if stream.write_all(&chunk).await.is_err() {
                        ended.store(true, Ordering::SeqCst);
                        return;
                    }
                    sent += chunk.len() as u64;
                    count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    BigUpstream {
        addr,
        written,
        hung_up,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_the_idle_timeout_with_bounded_buffering() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let big = big_upstream(SIZE).await;
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[upstreams]]\nname = \"big\"\nurl = \"http://{}\"\n\n[[routes]]\nname = \"big\"\npath = \"/big/*\"\nupstream = \"big\"\n{ROUTES}",
        big.addr
    );
    let shield = Shield::start_with(
        upstream.addr,
        &routes,
        "request_timeout = \"2s\"\nidle_timeout = \"3s\"",
    );
    let idle_before = metric(&shield, "api_shield_connections_idle_closed_total{}").await;
    let mut reader = shield.tls(Version::H1).await.unwrap();
    reader
        .write_all(b"GET /big/file HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    reader.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Now it stops reading. Others are served meanwhile.
    let reply = shield.send(Version::H2, get("GET", "/public/other")).await;
    assert_eq!(reply.status, 200);
    let idle = wait_metric(
        &shield,
        "api_shield_connections_idle_closed_total{}",
        Duration::from_secs(20),
        |v| v > idle_before,
    )
    .await;
    assert!(idle > idle_before, "the stalled client was never cut");
    // The shield let go of the upstream too, having taken only what the socket buffers hold.
    let start = Instant::now();
    while !big.hung_up.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        big.hung_up.load(Ordering::SeqCst),
        "the upstream exchange was left open"
    );
    let taken = big.written.load(Ordering::SeqCst);
    assert!(
        taken < 48 * 1024 * 1024,
        "{taken} bytes of the response were pulled from the upstream for a client reading none"
    );
    // What the client can still read ends short of the promised length.
    let mut rest = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => rest += n as u64,
        }
    }
    assert!(rest < SIZE, "the whole body arrived after the cut");
}

/// An upstream that reads request heads, counts them and never answers.
async fn hanging_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                if support::https::read_request_head(&mut stream)
                    .await
                    .is_none()
                {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                // Hold the connection without answering until the proxy gives up.
                let _ = stream.read(&mut [0u8; 1]).await;
            });
        }
    });
    (addr, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_past_the_concurrency_limit_are_refused() {
    let (hanging, heads) = hanging_upstream().await;
    let upstream = Upstream::start().await;
    let routes = format!(
        "[[upstreams]]\nname = \"hanging\"\nurl = \"http://{hanging}\"\n\n[[routes]]\nname = \"hanging\"\npath = \"/hang/*\"\nupstream = \"hanging\"\n{ROUTES}"
    );
    let shield = Shield::start_with(
        upstream.addr,
        &routes,
        "request_timeout = \"5s\"\nmax_concurrent_streams = 16",
    );
    let mut tls = shield.tls(Version::H2).await.unwrap();
    tls.write_all(&preface()).await.unwrap();
    // The server announces its limit in its SETTINGS; acknowledge them.
    let (kind, flags, _, payload) = read_frame(&mut tls).await.unwrap();
    assert_eq!(
        (kind, flags & 1),
        (0x4, 0),
        "the server starts with its SETTINGS"
    );
    let announced = payload.chunks(6).find_map(|setting| {
        (u16::from_be_bytes([setting[0], setting[1]]) == 0x3)
            .then(|| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]))
    });
    assert_eq!(announced, Some(16));
    tls.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap();
    // 48 requests at once, every one held open by the upstream.
    let block = header_block(&get_fields("/hang/x"));
    let mut out = Vec::new();
    for n in 0..48u32 {
        out.extend_from_slice(&h2_frame(0x1, 0x4 | 0x1, 1 + 2 * n, &block));
    }
    tls.write_all(&out).await.unwrap();
    let mut refused = 0;
    let read = async {
        while refused < 32 {
            let Some((kind, _, _, payload)) = read_frame(&mut tls).await else {
                return;
            };
            if kind == 0x3 && payload == 0x7u32.to_be_bytes() {
                refused += 1; // RST_STREAM(REFUSED_STREAM)
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    assert_eq!(refused, 32, "streams past the limit were not refused");
    // At most the admitted 16 reached the upstream.
    let forwarded = heads.load(Ordering::SeqCst);
    assert!(forwarded <= 16, "{forwarded} requests forwarded");
    let reply = shield.send(Version::H2, get("GET", "/public/ok")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_blocks_that_decompress_past_the_limit_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let rss_before = metric(&shield, "process_resident_memory_bytes{}").await;

    // An HPACK bomb: one 4000-byte value put in the dynamic table, then referenced 2000 times
    // with one byte each; 8 MB of headers from 6 KB on the wire.
    let mut block = header_block(&get_fields("/public/bomb"));
    hpack_literal("x-bomb", &[b'a'; 4000], true, &mut block);
    for _ in 0..2_000 {
        hpack_int(0x80, 7, 62, &mut block); // the first dynamic-table entry
    }
    for attempt in 0..20 {
        let mut tls = shield.tls(Version::H2).await.unwrap();
        let mut out = preface();
        out.extend_from_slice(&h2_frame(0x1, 0x4 | 0x1, 1, &block));
        tls.write_all(&out).await.unwrap();
        let ended = async {
            loop {
                match read_frame(&mut tls).await {
                    None => return "closed",
                    Some((0x3, _, 1, _)) => return "reset",
                    Some((0x7, ..)) => return "goaway",
                    Some((0x1, _, 1, payload)) => {
                        // A response head: the shield's own 431 is the only acceptable one.
                        assert!(
                            !payload.is_empty() && payload[0] != 0x88,
                            "attempt {attempt}: answered 200"
                        );
                        return "answered";
                    }
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), ended)
            .await
            .expect("the bomb was neither refused nor answered");
    }

    // CONTINUATION flood: a header block that never ends, sent in 16 KiB pieces.
    let mut tls = shield.tls(Version::H2).await.unwrap();
    let mut out = preface();
    out.extend_from_slice(&h2_frame(
        0x1,
        0x1,
        1,
        &header_block(&get_fields("/public/cont")),
    ));
    tls.write_all(&out).await.unwrap();
    let mut piece = Vec::new();
    while piece.len() < 16_000 {
        hpack_literal("x-filler", &[b'b'; 100], false, &mut piece);
    }
    let (mut read_half, mut write_half) = tokio::io::split(tls);
    let flood = tokio::spawn(async move {
        let mut sent = 0u64;
        for _ in 0..4_096 {
            if write_half
                .write_all(&h2_frame(0x9, 0, 1, &piece))
                .await
                .is_err()
            {
                break;
            }
            sent += piece.len() as u64;
        }
        sent
    });
    let cut = async {
        loop {
            match read_frame(&mut read_half).await {
                None | Some((0x7, ..)) | Some((0x3, _, 1, _)) => return,
                Some(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), cut)
        .await
        .expect("an endless header block was never cut off");
    let sent = tokio::time::timeout(Duration::from_secs(10), flood)
        .await
        .expect("the server stopped reading without closing")
        .unwrap();
    assert!(
        sent < 4_096 * 16_000,
        "all {sent} bytes of an endless header block were taken"
    );

    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    let reply = shield.send(Version::H2, get("GET", "/public/ok")).await;
    assert_eq!(reply.status, 200);
    let rss_after = metric(&shield, "process_resident_memory_bytes{}").await;
    assert!(
        rss_after - rss_before < 64.0 * 1024.0 * 1024.0,
        "resident memory grew from {rss_before} to {rss_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_instead_of_spinning_and_recovers() {
    let upstream = Upstream::start().await;
    // A daemon allowed 64 descriptors in all (it cannot raise a hard limit).
    let mut shield = Shield::start_wrapped(
        &["prlimit", "--nofile=64:64", "--"],
        upstream.addr,
        ROUTES,
        "max_connections_per_ip = 0",
    );
    assert!(
        shield
            .daemon
            .log
            .iter()
            .any(|l| l.contains("can exhaust the open-file limit")),
        "no warning that max_connections cannot fit"
    );
    // More connections than it has descriptors for, held open.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(tokio::net::TcpStream::connect(shield.https).await.unwrap());
    }
    shield
        .daemon
        .wait_for("out of resources; backing off", Duration::from_secs(10))
        .unwrap();
    // The shield cuts them at the handshake timeout and accepts the rest of the backlog: every
    // one of them ends, then a client is served again.
    let reaped = async {
        for mut stream in held {
            assert!(closed_by_peer(&mut stream).await);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reaped)
        .await
        .expect("connections were never reaped");
    let reply = shield
        .send(Version::H1, get("GET", "/public/recovered"))
        .await;
    assert_eq!(reply.status, 200);
    // While exhausted it retried a few times a second, not in a busy loop.
    let errors = metric(&shield, "api_shield_accept_errors_total{kind=resources}").await;
    assert!(
        (1.0..200.0).contains(&errors),
        "{errors} failed accepts for lack of resources"
    );
}
