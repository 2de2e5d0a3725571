//! The pool against real upstream servers on loopback: reuse, closing, retries, the sweeper.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{body::Frame, server::conn::http1 as server_http1, service::service_fn};
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, net::TcpListener, sync::mpsc};

use super::{Connector, Pool};
use crate::proxy::request::problem::{full, Body};

/// Connections the upstream accepted, and a message per connection that ended.
struct Upstream {
    target: http::Uri,
    accepted: Arc<AtomicUsize>,
    ended: mpsc::UnboundedReceiver<()>,
}

/// A hyper upstream: `/` answers `ok`; `/big` streams 64 chunks of 16 KiB; `/wait` answers
/// once `wait` callers are in flight at the same time.
async fn upstream(wait: usize) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target: http::Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let barrier = Arc::new(tokio::sync::Barrier::new(wait.max(1)));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let (ended_tx, barrier) = (ended_tx.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let barrier = Arc::clone(&barrier);
                    async move {
                        let body: Body = match request.uri().path() {
                            "/big" => TestBody {
                                chunks: 64,
                                trailers: false,
                            }
                            .boxed(),
                            "/trailers" => TestBody {
                                chunks: 1,
                                trailers: true,
                            }
                            .boxed(),
                            "/wait" => {
                                barrier.wait().await;
                                full("ok")
                            }
                            _ => full("ok"),
                        };
                        let mut response = http::Response::new(body);
                        // hyper sends the trailer fields the head announces.
                        response.headers_mut().insert(
                            http::header::TRAILER,
                            http::HeaderValue::from_static("x-checksum"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = server_http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = ended_tx.send(());
            });
        }
    });
    Upstream {
        target,
        accepted,
        ended,
    }
}

/// A body without a length: `chunks` chunks of 16 KiB, then a trailer when `trailers`.
struct TestBody {
    chunks: usize,
    trailers: bool,
}

impl hyper::body::Body for TestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = if self.chunks > 0 {
            self.chunks -= 1;
            Frame::data(Bytes::from(vec![b'x'; 16 * 1024]))
        } else if self.trailers {
            self.trailers = false;
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", http::HeaderValue::from_static("1"));
            Frame::trailers(trailers)
        } else {
            return std::task::Poll::Ready(None);
        };
        std::task::Poll::Ready(Some(Ok(frame)))
    }
}

fn connector() -> Connector {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(HttpConnector::new())
}

fn get(path: &str) -> http::Request<Body> {
    http::Request::builder()
        .uri(path)
        .header(http::header::HOST, "upstream")
        .body(full(""))
        .unwrap()
}

async fn fetch(pool: &Arc<Pool>, path: &str) -> Bytes {
    let response = pool.send(Box::new(get(path))).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    response.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    for _ in 0..5 {
        assert_eq!(fetch(&pool, "/").await, "ok");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn concurrent_requests_get_connections_of_their_own_and_all_come_back() {
    let upstream = upstream(3).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    let (a, b, c) = tokio::join!(
        fetch(&pool, "/wait"),
        fetch(&pool, "/wait"),
        fetch(&pool, "/wait")
    );
    assert_eq!(
        (a, b, c),
        (Bytes::from("ok"), Bytes::from("ok"), Bytes::from("ok"))
    );
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(pool.idle_count(), 3);
    // The next ones reuse them.
    fetch(&pool, "/").await;
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let mut upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    let response = pool.send(Box::new(get("/big"))).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(pool.idle_count(), 0);
    // The upstream sees that connection end, and the next request gets a new one.
    tokio::time::timeout(Duration::from_secs(10), upstream.ended.recv())
        .await
        .expect("the half-read connection is closed")
        .unwrap();
    assert_eq!(fetch(&pool, "/").await, "ok");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}

/// The pool's only connection is idle, and the next request goes on it.
async fn assert_given_back(pool: &Arc<Pool>, upstream: &Upstream) {
    assert_eq!(pool.idle_count(), 1);
    assert_eq!(fetch(pool, "/").await, "ok");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

/// hyper's servers drop a body once it says it has ended, without polling it for its end:
/// such a body gives its connection back too.
#[tokio::test]
async fn a_body_dropped_once_it_has_ended_gives_its_connection_back() {
    let upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    let mut body = pool.send(Box::new(get("/"))).await.unwrap().into_body();
    while !hyper::body::Body::is_end_stream(&body) {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    assert_given_back(&pool, &upstream).await;
}

/// The same for a body ending with trailers, after which servers stop polling it.
#[tokio::test]
async fn a_body_dropped_after_its_trailers_gives_its_connection_back() {
    let upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    let mut request = get("/trailers");
    request
        .headers_mut()
        .insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    let mut body = pool.send(Box::new(request)).await.unwrap().into_body();
    loop {
        let frame = body.frame().await.unwrap().unwrap();
        if frame.is_trailers() {
            break;
        }
    }
    drop(body);
    assert_given_back(&pool, &upstream).await;
}

#[tokio::test]
async fn a_large_body_read_to_its_end_gives_its_connection_back() {
    let upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    assert_eq!(fetch(&pool, "/big").await.len(), 64 * 16 * 1024);
    assert_eq!(fetch(&pool, "/").await, "ok");
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
}

/// An upstream that answers one request per connection with a keep-alive response, then
/// closes the connection: each next request must still succeed, on a new connection.
#[tokio::test]
async fn connections_the_upstream_closed_are_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target: http::Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0_u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let pool = Pool::new(connector(), target, Duration::from_mins(1));
    for _ in 0..4 {
        assert_eq!(fetch(&pool, "/").await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let mut upstream = upstream(1).await;
    let pool = Pool::new(
        connector(),
        upstream.target.clone(),
        Duration::from_millis(100),
    );
    fetch(&pool, "/").await;
    assert_eq!(pool.idle_count(), 1);
    // Virtual time: the sweeper runs every 50 ms and closes what was idle for two periods.
    tokio::time::sleep(Duration::from_millis(90)).await;
    assert_eq!(pool.idle_count(), 1, "closed before the idle timeout");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pool.idle_count(), 0);
    upstream.ended.recv().await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target: http::Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let pool = Pool::new(connector(), target, Duration::from_mins(1));
    let error = pool.send(Box::new(get("/"))).await.unwrap_err();
    assert!(matches!(error, super::PoolError::Connect(_)), "{error}");
}

#[tokio::test]
async fn each_worker_lends_only_the_connections_it_made() {
    let upstream = upstream(1).await;
    let pool = Pool::new(connector(), upstream.target.clone(), Duration::from_mins(1));
    let workers = crate::proxy::connection::workers::Workers::start(2).unwrap();
    let dispatcher = workers.dispatcher();
    let three_on_a_worker = |pool: &Arc<Pool>| {
        let pool = Arc::clone(pool);
        dispatcher.spawn(move || async move {
            for _ in 0..3 {
                assert_eq!(fetch(&pool, "/").await, "ok");
            }
        })
    };
    // All workers idle: worker 0 takes them, on one connection.
    three_on_a_worker(&pool).await.unwrap();
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 1);
    // Worker 0 busy: worker 1 takes the next ones, on a connection of its own rather than
    // worker 0's idle one (whose task runs on worker 0's thread).
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let busy = dispatcher.spawn(move || async move {
        let _ = released.await;
    });
    three_on_a_worker(&pool).await.unwrap();
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.idle_count(), 2);
    drop(release);
    busy.await.unwrap();
    // Worker 0 again: its own connection.
    three_on_a_worker(&pool).await.unwrap();
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 2);
}
