//! The control socket as an operator uses it: root only (mode 0600 and `SO_PEERCRED`),
//! `status`, `reload` (a bad config refused with its location, the old one kept), a request of
//! another protocol version refused, and `top`.

use crate::support;

use support::{
    https::{get, Upstream, Version},
    shield::Shield,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_answers_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let upstream = Upstream::start().await;
    let shield = Shield::start(
        upstream.addr,
        "# ROUTES\n[[routes]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"api\"\n",
    );
    let socket = shield.control.display().to_string();
    let mode = std::fs::metadata(&shield.control)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (code, out, err) = support::daemon::cli(&["status", "--json", "--socket", &socket]);
    assert_eq!(code, 0, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["routes"], serde_json::json!(["a"]));
    assert_eq!(status["listening"][0]["addr"], shield.https.to_string());
    let (code, out, _) = support::daemon::cli(&["status", "--socket", &socket]);
    assert_eq!(code, 0);
    assert!(out.contains("routes:      a"), "{out}");
    // Reload through the socket; a bad config is refused with its location, the old one stays.
    shield.write_routes("[[routes]]\nname = \"b\"\npath = \"/b/*\"\nupstream = \"api\"\n");
    let (code, out, err) = support::daemon::cli(&["reload", "--socket", &socket]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        shield.send(Version::H1, get("GET", "/b/1")).await.status,
        200
    );
    shield.write_routes("[[routes]]\nname = \"c\"\npath = \"c\"\nupstream = \"api\"\n");
    let (code, _, err) = support::daemon::cli(&["reload", "--socket", &socket]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("api-shield.toml:") && err.contains("routes[0].path"),
        "{err}"
    );
    assert_eq!(
        shield.send(Version::H1, get("GET", "/b/1")).await.status,
        200
    );
    // The protocol is versioned: a request of another version (here none, as written before
    // versions) is refused with a typed failure in this daemon's version, not guessed at.
    {
        use std::io::{BufRead, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&shield.control).unwrap();
        stream.write_all(b"{\"command\":\"status\"}\n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .unwrap();
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(reply["version"], 1, "{reply}");
        assert_eq!(reply["err"]["kind"], "unsupported_version", "{reply}");
    }
    // top, once: the busiest routes with their totals.
    let (code, out, err) = support::daemon::cli(&["top", "--once", "--socket", &socket]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("BUSIEST ROUTES") && out.contains("SOURCES BEING DROPPED"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with('b') && l.trim_end().ends_with(" 2")),
        "{out}"
    );
    // Under load, the view's rates are measured over its interval (not 0.0), and without a
    // terminal `top` prints that view instead of failing on raw mode. Bounded load: requests
    // one after the other until top is done, at most 2000.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (https, ca, done) = (shield.https, shield.pki.ca.clone(), done.clone());
        tokio::spawn(async move {
            let config = support::https::client_config(&ca, Version::H1);
            let mut sent = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && sent < 2000 {
                let reply =
                    support::https::send(https, config.clone(), Version::H1, get("GET", "/b/1"))
                        .await;
                assert_eq!(reply.status, 200);
                sent += 1;
            }
            sent
        })
    };
    let socket_arg = socket.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        support::daemon::cli(&["top", "--interval", "1", "--socket", &socket_arg])
    })
    .await
    .unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = load.await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not a terminal"), "{err}");
    let rate: f64 = out
        .lines()
        .find(|l| l.starts_with("b "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate for route b: {out}"));
    assert!(rate > 0.0, "REQ/S under load ({sent} requests sent): {out}");
    // A caller that is not root is refused, with a clear message.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(support::daemon::binary())
        .args(["status", "--socket", &socket])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("root-only"), "{err}");
    // A second daemon on the same socket refuses to start.
    shield.write_routes("[[routes]]\nname = \"b\"\npath = \"/b/*\"\nupstream = \"api\"\n");
    let failure = support::daemon::start_expecting_failure(None, &shield.config);
    assert!(
        failure.log.contains("in use by a running daemon"),
        "{}",
        failure.log
    );
    // Without a daemon, the CLI says so.
    let (code, _, err) = support::daemon::cli(&["status", "--socket", "/nonexistent/control.sock"]);
    assert_ne!(code, 0);
    assert!(err.contains("the daemon is not running"), "{err}");
}
