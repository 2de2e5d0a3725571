//! The proxy under test: the daemon binary started with TLS from a CA made in the test, in front
//! of a given upstream, and the request helpers the proxy tests share.

use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::{
    daemon::Daemon,
    https::{client_config, get, send, Reply, TestPki, Version},
};

/// The daemon binary running the proxy (fast path off), with its addresses and test PKI.
pub struct Shield {
    /// The running daemon.
    pub daemon: Daemon,
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The redirect listener.
    pub http: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
    /// The config file it runs (rewrite it and send SIGHUP to reload).
    pub config: std::path::PathBuf,
    /// Its control socket.
    pub control: std::path::PathBuf,
    /// The CA and certificate it serves.
    pub pki: TestPki,
    _dir: tempfile::TempDir,
}

impl Shield {
    /// Replaces what follows `# ROUTES` in the shield's config file (then SIGHUP or
    /// `api-shield reload` applies it).
    pub fn write_routes(&self, routes: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let base = text.split("# ROUTES").next().unwrap().to_owned();
        std::fs::write(&self.config, format!("{base}# ROUTES\n{routes}")).unwrap();
    }

    /// Starts the daemon (fast path off) in front of `upstream` with `routes` (TOML).
    pub fn start(upstream: SocketAddr, routes: &str) -> Shield {
        Shield::start_with(upstream, routes, "")
    }

    /// The same, with more `[proxy]` settings.
    pub fn start_with(upstream: SocketAddr, routes: &str, proxy: &str) -> Shield {
        Shield::start_wrapped(&[], upstream, routes, proxy)
    }

    /// The same, run by `wrapper` (see [`Daemon::start_wrapped`]).
    pub fn start_wrapped(
        wrapper: &[&str],
        upstream: SocketAddr,
        routes: &str,
        proxy: &str,
    ) -> Shield {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        Shield::start_in(wrapper, upstream, routes, proxy, "", "", pki, dir)
    }

    /// The same, with more `[listeners.tls]` settings and a given PKI.
    pub fn start_full(
        upstream: SocketAddr,
        routes: &str,
        proxy: &str,
        listener: &str,
        tls: &str,
        pki: TestPki,
        dir: tempfile::TempDir,
    ) -> Shield {
        Shield::start_in(&[], upstream, routes, proxy, listener, tls, pki, dir)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_in(
        wrapper: &[&str],
        upstream: SocketAddr,
        routes: &str,
        proxy: &str,
        listener: &str,
        tls: &str,
        pki: TestPki,
        dir: tempfile::TempDir,
    ) -> Shield {
        let config = config_text(upstream, routes, proxy, listener, tls, &pki, dir.path());
        Shield::launch(wrapper, &config, pki, dir)
    }

    /// Starts the daemon on [`config_text`] (no extra settings) changed by `edit`, for settings
    /// the other constructors cannot place (keys of the inline `redirect` table, say).
    pub fn start_edited(
        upstream: SocketAddr,
        routes: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Shield {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        let config = edit(config_text(upstream, routes, "", "", "", &pki, dir.path()));
        Shield::launch(&[], &config, pki, dir)
    }

    fn launch(wrapper: &[&str], config: &str, pki: TestPki, dir: tempfile::TempDir) -> Shield {
        let path = dir.path().join("api-shield.toml");
        std::fs::write(&path, config).unwrap();
        let daemon =
            Daemon::start_wrapped(None, wrapper, &path, &[]).unwrap_or_else(|e| panic!("{e}"));
        let ready = daemon
            .log
            .iter()
            .find(|l| l.contains("\"message\":\"ready\""))
            .unwrap()
            .clone();
        let json: serde_json::Value = serde_json::from_str(&ready).unwrap();
        let listening = json["listening"].as_str().unwrap().to_owned();
        let addr = |name: &str| -> SocketAddr {
            listening
                .split(',')
                .find_map(|item| item.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {listening}"))
                .parse()
                .unwrap()
        };
        Shield {
            https: addr("listener-0"),
            http: addr("listener-0-redirect"),
            admin: addr("admin"),
            config: path.clone(),
            control: dir.path().join("control.sock"),
            daemon,
            pki,
            _dir: dir,
        }
    }

    /// A fresh TLS connection to the HTTPS listener (SNI `localhost`), offering `version`.
    pub async fn tls(
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

    pub async fn send(&self, version: Version, request: Request<Full<Bytes>>) -> Reply {
        send(
            self.https,
            client_config(&self.pki.ca, version),
            version,
            request,
        )
        .await
    }
}

/// Routes most proxy tests use.
pub const ROUTES: &str = r#"
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

/// The config a [`Shield`] runs: fast path off, admin on an ephemeral port, the control socket
/// in `dir`, one HTTPS listener (with a redirect listener) serving `pki`'s certificate, upstream
/// `api` at `upstream` and `down` (refusing), then `routes`; `proxy`, `listener` and `tls` add
/// lines to those sections.
pub fn config_text(
    upstream: SocketAddr,
    routes: &str,
    proxy: &str,
    listener: &str,
    tls: &str,
    pki: &TestPki,
    dir: &std::path::Path,
) -> String {
    format!(
        r#"
[fastpath]
enabled = false

[admin]
bind = "127.0.0.1:0"

[control]
socket = "{control}"

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
        control = dir.join("control.sock").display(),
    )
}

/// A request with these extra headers.
pub fn with_headers(
    mut request: Request<Full<Bytes>>,
    headers: &[(&'static str, &str)],
) -> Request<Full<Bytes>> {
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}

/// A request with an `Origin`.
pub fn with_origin(method: &str, target: &str, origin: &str) -> Request<Full<Bytes>> {
    let mut request = get(method, target);
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    request
}
