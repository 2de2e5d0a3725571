//! The proxy's TLS end to end: certificate reload under open connections, TLS 1.1 and weak
//! suites refused, IP addresses as SNI, mutual TLS, TLS to upstreams validated against their
//! CA, the PROXY protocol ahead of the handshake, and the plain listener that only redirects
//! to HTTPS (to served names only, never with HSTS).

use crate::support;

use std::net::SocketAddr;

use support::{
    https::{client_config, get, send, TestPki, Upstream, Version},
    shield::{with_headers, Shield, ROUTES},
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_or_broken_certificate_files_on_reload_keep_the_served_certificate() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start(upstream.addr, ROUTES);
    let served = |shield: &Shield| {
        let fresh = client_config(&shield.pki.ca, Version::H2);
        let addr = shield.https;
        async move { support::https::connect_h2(addr, fresh).await.1 }
    };
    let first = served(&shield).await;

    // The key file is gone.
    std::fs::remove_file(&shield.pki.key).unwrap();
    reload_fails(&mut shield, 1);
    let failure = shield.daemon.log.last().unwrap().clone();
    assert!(
        failure.contains(&shield.pki.key.display().to_string()),
        "the failure does not name the file: {failure}"
    );
    assert_eq!(served(&shield).await, first);

    // A new pair, then the certificate overwritten with garbage.
    let _ = shield.pki.issue();
    std::fs::write(&shield.pki.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    reload_fails(&mut shield, 2);
    assert_eq!(served(&shield).await, first);

    // A directory where the certificate should be.
    std::fs::remove_file(&shield.pki.cert).unwrap();
    std::fs::create_dir(&shield.pki.cert).unwrap();
    reload_fails(&mut shield, 3);
    assert_eq!(served(&shield).await, first);
    let reply = shield.send(Version::H1, get("GET", "/public/still")).await;
    assert_eq!(reply.status, 200);

    // Good files again: the next reload takes them.
    std::fs::remove_dir(&shield.pki.cert).unwrap();
    let good = shield.pki.issue();
    nix::sys::signal::kill(shield.daemon.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    shield
        .daemon
        .wait_for("certificates reloaded", std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(served(&shield).await, good);
}

/// Sends SIGHUP and waits for the `nth` certificate reload failure the shield logs.
fn reload_fails(shield: &mut Shield, nth: usize) {
    nix::sys::signal::kill(shield.daemon.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    shield
        .daemon
        .wait_for_count(
            "certificate reload failed; keeping the previous ones",
            nth,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
}

/// A ClientHello as an old or weak client sends it: `version` in the hello, these suites.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    client_hello_naming(version, suites, b"localhost")
}

/// The same, naming `name` in its SNI extension.
fn client_hello_naming(version: u16, suites: &[u16], name: &[u8]) -> Vec<u8> {
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
async fn hellos_naming_an_ip_address_as_sni_are_not_a_warning_per_connection() {
    let upstream = Upstream::start().await;
    let mut shield = Shield::start(upstream.addr, ROUTES);
    // RFC 6066 forbids IP literals in SNI; a scanner sends them anyway, one per connection.
    for _ in 0..20 {
        let (kind, bytes) = first_record(
            shield.https,
            &client_hello_naming(0x0303, &[0xc02b], b"127.0.0.1"),
        )
        .await;
        assert!(kind == 0x15 || kind == 0x16, "{bytes:?}");
    }
    // A well-formed connection after them is served.
    let reply = shield.send(Version::H1, get("GET", "/public/after")).await;
    assert_eq!(reply.status, 200);
    shield.daemon.stop();
    // Warnings about the host itself (file limits, say) come before it is ready.
    let log = &shield.daemon.log;
    let ready = log
        .iter()
        .position(|l| l.contains("\"message\":\"ready\""))
        .unwrap();
    let warnings: Vec<_> = log[ready..]
        .iter()
        .filter(|l| l.contains("\"level\":\"WARN\""))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
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
        let outcome = support::https::try_send_h1(tcp, config, get("GET", "/public/y")).await;
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
        let config = client_config(&shield.pki.ca, Version::H1);
        let addr = shield.https;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(header).await.unwrap();
            let request = with_headers(get("GET", "/public/pp"), &[("x-forwarded-for", "6.6.6.6")]);
            support::https::try_send_h1(tcp, config, request).await
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
async fn plain_http_only_redirects_and_never_sends_hsts() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(upstream.addr, ROUTES);
    let reply = plain_get(&shield, "/api/v1/users/1?x=2", None).await;
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
    assert_eq!(reply.headers()["x-content-type-options"], "nosniff");
    // A Host the listener does not serve (no certificate, no route names it) is never
    // redirected to: 400 problem+json, with the security headers and still no HSTS.
    for host in ["evil.test", "evil.test:8080", "10.9.9.9"] {
        let reply = plain_get(&shield, "/api/v1/users/1", Some(host)).await;
        assert_eq!(reply.status(), 400, "{host}");
        assert!(reply.headers().get("location").is_none(), "{host}");
        assert_eq!(reply.headers()["content-type"], "application/problem+json");
        assert_eq!(reply.headers()["x-content-type-options"], "nosniff");
        assert!(reply.headers().get("strict-transport-security").is_none());
        let body = http_body_util::BodyExt::collect(reply.into_body())
            .await
            .unwrap()
            .to_bytes();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["status"], 400, "{problem}");
    }
    assert!(upstream.seen().is_empty());
    let reply = shield
        .send(Version::H1, get("GET", "/api/v1/users/1"))
        .await;
    assert!(reply.headers.get("strict-transport-security").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_redirects_to_a_host_a_route_names() {
    let upstream = Upstream::start().await;
    let shield = Shield::start(
        upstream.addr,
        "[[routes]]\nname = \"named\"\nhost = \"*.api.example\"\npath = \"/*\"\nupstream = \"api\"\n",
    );
    let reply = plain_get(&shield, "/x", Some("eu.api.example")).await;
    assert_eq!(reply.status(), 308);
    assert_eq!(
        reply.headers()["location"],
        format!("https://eu.api.example:{}/x", shield.https.port()).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_sends_unserved_hosts_to_the_canonical_name() {
    let upstream = Upstream::start().await;
    let shield = Shield::start_edited(upstream.addr, ROUTES, |config| {
        let plain = "redirect = { bind = \"127.0.0.1:0\" }";
        assert!(config.contains(plain));
        config.replace(
            plain,
            "redirect = { bind = \"127.0.0.1:0\", canonical_host = \"api.example.com\" }",
        )
    });
    for (host, location_host) in [
        // A name the listener serves (its certificate's) keeps its name.
        ("localhost", "localhost"),
        // Anything else goes to the canonical name, never to where the client asked.
        ("evil.test", "api.example.com"),
        ("evil.test:8080", "api.example.com"),
        ("10.9.9.9", "api.example.com"),
    ] {
        let reply = plain_get(&shield, "/api/v1/users/1?x=2", Some(host)).await;
        assert_eq!(reply.status(), 308, "{host}");
        assert_eq!(
            reply.headers()["location"],
            format!(
                "https://{location_host}:{}/api/v1/users/1?x=2",
                shield.https.port()
            )
            .as_str(),
            "{host}"
        );
        assert_eq!(reply.headers()["x-content-type-options"], "nosniff");
        assert!(reply.headers().get("strict-transport-security").is_none());
    }
    assert!(upstream.seen().is_empty());
}

/// A GET on the plain listener, on a connection of its own, with this `Host` if given.
async fn plain_get(
    shield: &Shield,
    target: &str,
    host: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(shield.http).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = get("GET", target);
    if let Some(host) = host {
        request.headers_mut().insert("host", host.parse().unwrap());
    }
    sender.send_request(request).await.unwrap()
}
