//! HTTPS test kit: a CA and a server certificate made in the test (rcgen), a real upstream HTTP
//! server that records what reaches it, and a TLS client speaking HTTP/1.1 or HTTP/2 by ALPN.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

/// A CA and a leaf for `localhost` and `127.0.0.1`, as PEM files in a directory.
pub struct TestPki {
    /// The CA certificate (DER), to trust in clients.
    pub ca: CertificateDer<'static>,
    /// Leaf chain PEM path.
    pub cert: PathBuf,
    /// Leaf key PEM path.
    pub key: PathBuf,
    /// The CA certificate as a PEM file.
    pub ca_file: PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    ca_pem: String,
}

impl TestPki {
    /// Makes the CA and the leaf in `dir`.
    pub fn new(dir: &Path) -> TestPki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "api-shield test CA");
        let ca = ca_params.clone().self_signed(&ca_key).unwrap();
        let pki = TestPki {
            ca: ca.der().clone(),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca_file: dir.join("ca.pem"),
            ca_params,
            ca_key,
            ca_pem: ca.pem(),
        };
        std::fs::write(&pki.ca_file, &pki.ca_pem).unwrap();
        pki.issue();
        pki
    }

    /// A client certificate chain and key signed by this CA.
    pub fn client_identity(
        &self,
    ) -> (
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test client");
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
    }

    /// A TLS server config serving this PKI's leaf (for a TLS upstream).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let chain: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut std::fs::read(&self.cert).unwrap().as_slice())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(&self.key).unwrap().as_slice())
            .unwrap()
            .unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
        )
    }

    /// A server certificate for `names` (host names or IP addresses) signed by this CA,
    /// written as `{stem}.pem` (leaf then CA) and `{stem}.key` in `dir`; their paths.
    pub fn server_identity(&self, dir: &Path, stem: &str, names: &[String]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.to_vec()).unwrap();
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.ca_pem)).unwrap();
        (cert_path, key_path)
    }

    /// Issues a fresh leaf (new key) into the PEM files; returns its DER.
    pub fn issue(&self) -> CertificateDer<'static> {
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), &self.ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        std::fs::write(&self.key, leaf_key.serialize_pem()).unwrap();
        std::fs::write(&self.cert, format!("{}{}", leaf.pem(), self.ca_pem)).unwrap();
        leaf.der().clone()
    }
}

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body length.
    pub body_len: usize,
}

/// A real upstream on 127.0.0.1 (port chosen by the kernel) answering `200 upstream:<path>`
/// with a `Server` banner, and recording every request.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What reached it.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections it accepted.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    /// Starts it on the current runtime.
    pub async fn start() -> Upstream {
        Upstream::start_with(None).await
    }

    /// Starts it, serving TLS with `tls` when given.
    pub async fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let record = Arc::clone(&record);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |mut request: Request<Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            // An upgrade request: switch, then echo every byte back.
                            if let Some(protocol) = request.headers().get("upgrade").cloned() {
                                let on_upgrade = hyper::upgrade::on(&mut request);
                                tokio::spawn(async move {
                                    if let Ok(upgraded) = on_upgrade.await {
                                        let (mut reader, mut writer) =
                                            tokio::io::split(TokioIo::new(upgraded));
                                        let _ = tokio::io::copy(&mut reader, &mut writer).await;
                                    }
                                });
                                let mut response = Response::new(Full::new(Bytes::new()));
                                *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                                response
                                    .headers_mut()
                                    .insert("connection", "upgrade".parse().unwrap());
                                response.headers_mut().insert("upgrade", protocol);
                                return Ok::<_, Infallible>(response);
                            }
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let target = parts
                                .uri
                                .path_and_query()
                                .map_or("/", |p| p.as_str())
                                .to_owned();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                target: target.clone(),
                                headers: parts.headers.clone(),
                                body_len: body.len(),
                            });
                            let mut response =
                                Response::new(Full::new(Bytes::from(format!("upstream:{target}"))));
                            response
                                .headers_mut()
                                .insert("server", "upstream/1.0".parse().unwrap());
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(config) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Which HTTP version the client asks for by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1.
    H1,
    /// HTTP/2.
    H2,
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
    /// The version spoken.
    pub version: http::Version,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A TLS client config trusting `ca`, offering `version` by ALPN, with a client certificate
/// when `identity` is given.
pub fn client_config_with(
    ca: &CertificateDer<'static>,
    version: Version,
    identity: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![match version {
        Version::H1 => b"http/1.1".to_vec(),
        Version::H2 => b"h2".to_vec(),
    }];
    Arc::new(config)
}

/// A TLS client config trusting `ca`, offering `version` by ALPN.
pub fn client_config(ca: &CertificateDer<'static>, version: Version) -> Arc<rustls::ClientConfig> {
    client_config_with(ca, version, None)
}

/// Sends one request over a fresh TLS connection to `addr` (SNI `localhost`).
pub async fn send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    version: Version,
    mut request: Request<Full<Bytes>>,
) -> Reply {
    if version == Version::H2 && request.uri().scheme().is_none() {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *request.uri_mut() = format!("https://localhost{target}").parse().unwrap();
        request.headers_mut().remove("host");
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let io = TokioIo::new(tls);
    let response = match version {
        Version::H1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        }
        Version::H2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            sender.send_request(request).await.unwrap()
        }
    };
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        version: parts.version,
    }
}

/// An open HTTP/2 connection over TLS, and the leaf certificate the server showed.
pub async fn connect_h2(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    CertificateDer<'static>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    (sender, leaf)
}

/// A GET (or another method) with a Host header and no body.
pub fn get(method: &str, target: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(target)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Sends one HTTP/1.1 request over TLS on an open `tcp` connection (bytes may already have been
/// written on it), failing instead of panicking when the server refuses the connection.
pub async fn try_send_h1(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    request: Request<Full<Bytes>>,
) -> std::io::Result<Response<Incoming>> {
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)
}

/// Reads one request head (through the blank line) from a raw upstream-side connection;
/// `None` if the connection ends first.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}

/// One HTTP/1.1 request over TLS (SNI `localhost`) from `src` inside `ns` to `dst`: `GET
/// target` with `headers`. Its status, or the error: a connect that times out after 1.5 s (as
/// when the source is dropped at the NIC), or no answer within 5 s.
pub fn status_from(
    ns: &super::netns::Netns,
    src: std::net::IpAddr,
    dst: SocketAddr,
    target: &str,
    headers: &[(&'static str, &str)],
    ca: &CertificateDer<'static>,
) -> std::io::Result<u16> {
    let config = client_config(ca, Version::H1);
    let mut request = get("GET", target);
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("a valid header value"));
    }
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_owned());
    ns.run(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let socket = match src {
                    std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                    std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
                };
                socket.bind(SocketAddr::new(src, 0))?;
                let tcp = tokio::time::timeout(
                    std::time::Duration::from_millis(1500),
                    socket.connect(dst),
                )
                .await
                .map_err(|_| timed_out("connect timed out"))??;
                let response = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    try_send_h1(tcp, config, request),
                )
                .await
                .map_err(|_| timed_out("no answer"))??;
                Ok(response.status().as_u16())
            })
    })
    .join()
    .unwrap()
}
