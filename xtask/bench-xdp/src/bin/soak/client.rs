//! The soak's HTTPS client plumbing: TCP connections from a chosen loopback source address
//! (how a hostile client gets its own 127.0.x.y), TLS trusting the run's CA with ALPN `h2` or
//! `http/1.1`, HTTP/1.1 and HTTP/2 senders on them, and request builders. Every step has a
//! timeout, because a banned source's packets vanish at the NIC and nothing ever answers it.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// HTTP/1.1 or HTTP/2 (chosen by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
}

/// Where the clients go and how they speak TLS there.
#[derive(Clone)]
pub struct Target {
    /// The shield's HTTPS listener.
    pub addr: SocketAddr,
    h1: Arc<rustls::ClientConfig>,
    h2: Arc<rustls::ClientConfig>,
}

impl Target {
    /// Clients of `addr` trusting `ca`.
    pub fn new(addr: SocketAddr, ca: &CertificateDer<'static>) -> anyhow::Result<Target> {
        let config = |alpn: &[u8]| -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone())?;
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(config))
        };
        Ok(Target {
            addr,
            h1: config(b"http/1.1")?,
            h2: config(b"h2")?,
        })
    }

    /// A TCP connection from `from` (any 127.0.0.0/8 address is local on Linux).
    pub async fn tcp(&self, from: Ipv4Addr, timeout: Duration) -> io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((from, 0)))?;
        tokio::time::timeout(timeout, socket.connect(self.addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    /// TLS on `tcp`, SNI `localhost`, offering `version`.
    pub async fn tls(
        &self,
        tcp: TcpStream,
        version: Version,
        timeout: Duration,
    ) -> io::Result<TlsStream<TcpStream>> {
        let config = match version {
            Version::H1 => Arc::clone(&self.h1),
            Version::H2 => Arc::clone(&self.h2),
        };
        let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
        tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// A connection from `from` ready for requests.
    pub async fn open(
        &self,
        from: Ipv4Addr,
        version: Version,
        timeout: Duration,
    ) -> io::Result<Sender> {
        let tcp = self.tcp(from, timeout).await?;
        let tls = self.tls(tcp, version, timeout).await?;
        Sender::handshake(tls, version, timeout).await
    }
}

/// A request sender on one connection; its connection task is aborted when it is dropped.
pub struct Sender {
    inner: Inner,
    conn: tokio::task::JoinHandle<()>,
}

enum Inner {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Sender {
    /// The HTTP handshake on an established TLS stream.
    pub async fn handshake(
        tls: TlsStream<TcpStream>,
        version: Version,
        timeout: Duration,
    ) -> io::Result<Sender> {
        let io = TokioIo::new(tls);
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "HTTP handshake timed out");
        match version {
            Version::H1 => {
                let (sender, conn) = tokio::time::timeout(timeout, http1::handshake(io))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(io::Error::other)?;
                Ok(Sender {
                    inner: Inner::H1(sender),
                    conn: tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                })
            }
            Version::H2 => {
                let (sender, conn) =
                    tokio::time::timeout(timeout, http2::handshake(TokioExecutor::new(), io))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(io::Error::other)?;
                Ok(Sender {
                    inner: Inner::H2(sender),
                    conn: tokio::spawn(async move {
                        let _ = conn.await;
                    }),
                })
            }
        }
    }

    /// Whether the connection task has ended (the server closed it).
    pub fn is_closed(&self) -> bool {
        self.conn.is_finished()
    }

    /// Waits until the server closes the connection.
    pub async fn closed(&mut self) {
        let _ = (&mut self.conn).await;
    }

    /// Sends `request` and reads the whole answer within `timeout`: (status, body).
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> io::Result<(StatusCode, Bytes)> {
        let exchange = async {
            let response = match &mut self.inner {
                Inner::H1(sender) => {
                    sender.ready().await.map_err(io::Error::other)?;
                    sender.send_request(request).await
                }
                Inner::H2(sender) => {
                    // HTTP/2 carries the authority in the URI, not in Host.
                    let target = request
                        .uri()
                        .path_and_query()
                        .map_or("/", http::uri::PathAndQuery::as_str)
                        .to_owned();
                    *request.uri_mut() = format!("https://localhost{target}")
                        .parse()
                        .map_err(io::Error::other)?;
                    request.headers_mut().remove(http::header::HOST);
                    sender.ready().await.map_err(io::Error::other)?;
                    sender.send_request(request).await
                }
            }
            .map_err(io::Error::other)?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(io::Error::other)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
    }
}

/// A request with a Host header, `headers` and `body`.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(body.into()))
        .expect("the soak builds only valid requests")
}
