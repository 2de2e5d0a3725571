//! Test keys (tests/fixtures/jwt) and tokens signed with them, and a JWK set endpoint that
//! counts its fetches and can be changed while it runs.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A fixture file's path.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/jwt")
        .join(name)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for issuer `iss` and audience `api`, valid for ten minutes, with `scope`.
pub fn claims(iss: &str, scope: &str) -> Value {
    json!({"iss": iss, "aud": "api", "sub": "alice", "iat": now(), "exp": now() + 600, "scope": scope})
}

/// Signs with a fixture RSA key, `kid` in the header when given.
pub fn rs256(private: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(private)).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Signs with a fixture RSA key (RS256) under `header` as written, members `jsonwebtoken`'s
/// header type cannot carry (`crit`, `b64`) included.
pub fn rs256_with_header(private: &str, header: &Value, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture(private)).unwrap()).unwrap();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{message}.{signature}")
}

/// Signs with an HMAC secret.
pub fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims.clone())
    )
}

/// A JWK set served over plain HTTP on loopback.
pub struct JwksServer {
    /// Where.
    pub addr: SocketAddr,
    /// What it serves.
    pub body: Arc<Mutex<String>>,
    /// Fetches so far.
    pub fetches: Arc<AtomicU64>,
}

impl JwksServer {
    /// Serves the fixture `file` on the current runtime.
    pub async fn start(file: &str) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(std::fs::read_to_string(fixture(file)).unwrap()));
        let fetches = Arc::new(AtomicU64::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&fetches));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let text = served.lock().unwrap().clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text)))) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            body,
            fetches,
        }
    }

    /// Serves `files` merged into one set from now on.
    pub fn serve(&self, files: &[&str]) {
        let mut keys = Vec::new();
        for file in files {
            let set: Value =
                serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
            keys.extend(set["keys"].as_array().unwrap().iter().cloned());
        }
        *self.body.lock().unwrap() = json!({ "keys": keys }).to_string();
    }

    /// Fetches so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}
