//! bench-gateway's peers: the upstream, nginx, HAProxy and api-shield (this build or an earlier
//! one) configured as the benchmark runs them, their ports and their access-log files.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{child_guard::Guard, proxy_peers::ShieldConfig, shield_cli};

pub const UPSTREAM_PORT: u16 = 18080;

/// The three proxies, and an earlier build of api-shield.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    Shield,
    Nginx,
    Haproxy,
    Baseline,
}

impl Proxy {
    pub const ALL: [Proxy; 3] = [Proxy::Shield, Proxy::Nginx, Proxy::Haproxy];

    pub fn name(self) -> &'static str {
        match self {
            Proxy::Shield => "api-shield",
            Proxy::Nginx => "nginx",
            Proxy::Haproxy => "HAProxy",
            Proxy::Baseline => "baseline build",
        }
    }

    /// Its port with the access log on (`logged`) or off.
    pub fn port(self, logged: bool) -> u16 {
        let base = match self {
            Proxy::Shield => 18460,
            Proxy::Nginx => 18462,
            Proxy::Haproxy => 18464,
            Proxy::Baseline => 18466,
        };
        if logged {
            base
        } else {
            base + 1
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Proxy::Shield | Proxy::Baseline => "/api/ping",
            Proxy::Nginx | Proxy::Haproxy => "/",
        }
    }
}

/// The api-shield daemon with its log on, for the line count.
pub const SHIELD_ADMIN: u16 = 19460;

pub fn log_file(dir: &Path, proxy: Proxy) -> PathBuf {
    dir.join("logs").join(match proxy {
        Proxy::Shield => "api-shield.log",
        Proxy::Nginx => "nginx.log",
        Proxy::Haproxy => "haproxy.log",
        Proxy::Baseline => "baseline.log",
    })
}

pub fn common_conf(dir: &Path, name: &str, workers: usize) -> String {
    format!(
        "worker_processes {workers};\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.error.log;\n\
         daemon off;\nevents {{ worker_connections 4096; }}\n",
        dir = dir.display()
    )
}

pub fn upstream_conf(dir: &Path) -> String {
    format!(
        "{}http {{\n access_log off;\n keepalive_requests 1000000;\n server {{\n  \
         listen 127.0.0.1:{UPSTREAM_PORT};\n  \
         location / {{ default_type text/plain; return 200 \"ok\"; }}\n }}\n}}\n",
        common_conf(dir, "upstream", 1)
    )
}

pub fn nginx_conf(dir: &Path, cert: &Path, key: &Path, workers: usize) -> String {
    let server = |port: u16, log: &str| {
        format!(
            " server {{\n  listen 127.0.0.1:{port} ssl http2;\n  {log}\n  \
             ssl_certificate {};\n  ssl_certificate_key {};\n  ssl_protocols TLSv1.2 TLSv1.3;\n  \
             add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always;\n  \
             location / {{ proxy_pass http://api; proxy_http_version 1.1; \
             proxy_set_header Connection \"\"; }}\n }}\n",
            cert.display(),
            key.display()
        )
    };
    format!(
        "{}http {{\n keepalive_requests 1000000;\n http2_max_requests 1000000;\n \
         upstream api {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 64; }}\n{}{}}}\n",
        common_conf(dir, "proxy", workers),
        server(
            Proxy::Nginx.port(true),
            &format!(
                "access_log {} combined buffer=64k flush=1s;",
                log_file(dir, Proxy::Nginx).display()
            )
        ),
        server(Proxy::Nginx.port(false), "access_log off;"),
    )
}

pub fn start_haproxy(dir: &Path, cert: &Path, key: &Path, workers: usize) -> Result<Guard> {
    // HAProxy takes the certificate and its key in one file.
    let pem = dir.join("haproxy.pem");
    std::fs::write(&pem, [std::fs::read(cert)?, std::fs::read(key)?].concat())?;
    let frontend = |name: &str, port: u16, log: &str| {
        format!(
            "frontend {name}\n  bind 127.0.0.1:{port} ssl crt {} alpn h2,http/1.1\n{log}  \
             http-response set-header Strict-Transport-Security \"max-age=31536000; includeSubDomains\"\n  \
             default_backend api\n",
            pem.display()
        )
    };
    let config = format!(
        "global\n  nbthread {workers}\n  maxconn 8192\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n  \
         option http-keep-alive\n\
         {}{}\
         backend api\n  http-reuse always\n  server api 127.0.0.1:{UPSTREAM_PORT}\n",
        frontend(
            "logged",
            Proxy::Haproxy.port(true),
            "  log stdout format raw local0\n  option httplog\n"
        ),
        frontend("quiet", Proxy::Haproxy.port(false), ""),
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()?;
    if !check.status.success() {
        bail!(
            "haproxy config: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(File::create(log_file(dir, Proxy::Haproxy))?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting haproxy")?;
    Ok(Guard(child))
}

/// The daemon the access log is kept for, stopped on demand.
pub struct Shield(pub Option<Guard>);

impl Shield {
    pub fn stop(&mut self) {
        self.0.take();
    }
}

pub fn start_shield(
    dir: &Path,
    cert: &Path,
    key: &Path,
    workers: usize,
    logged: bool,
) -> Result<Shield> {
    let port = Proxy::Shield.port(logged);
    let admin = if logged {
        SHIELD_ADMIN
    } else {
        SHIELD_ADMIN + 1
    };
    let access_log = if logged {
        format!(
            "[access_log]\nsink = \"file\"\npath = \"{}\"",
            log_file(dir, Proxy::Shield).display()
        )
    } else {
        "[access_log]\nsink = \"off\"".to_owned()
    };
    let config = shield_config(dir, cert, key, workers, port, admin, &access_log);
    let path = dir.join(format!("api-shield-{port}.toml"));
    std::fs::write(&path, config)?;
    spawn_shield(&shield_cli::binary(), &path, Stdio::null()).map(|guard| Shield(Some(guard)))
}

/// The earlier build, its access log (the daemon's stderr at info) going to a file.
pub fn start_baseline(
    binary: &Path,
    dir: &Path,
    cert: &Path,
    key: &Path,
    workers: usize,
) -> Result<Guard> {
    let port = Proxy::Baseline.port(true);
    let config = shield_config(dir, cert, key, workers, port, SHIELD_ADMIN + 2, "");
    let path = dir.join(format!("api-shield-{port}.toml"));
    std::fs::write(&path, config)?;
    let log = File::create(log_file(dir, Proxy::Baseline))?;
    spawn_shield(binary, &path, log.into())
}

/// As the shipped unit runs it: JSON logs, `RUST_LOG` unset (info).
pub fn spawn_shield(binary: &Path, config: &Path, stderr: Stdio) -> Result<Guard> {
    let child = Command::new(binary)
        .args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (cargo build --release first)",
                binary.display()
            )
        })?;
    Ok(Guard(child))
}

/// api-shield's config: [`ShieldConfig`] with `workers`, its admin listener on `admin` and
/// `access_log` (a table, or nothing for builds that predate it).
pub fn shield_config(
    dir: &Path,
    cert: &Path,
    key: &Path,
    workers: usize,
    port: u16,
    admin: u16,
    access_log: &str,
) -> String {
    ShieldConfig {
        workers,
        admin: &format!("127.0.0.1:{admin}"),
        control: &dir.join(format!("control-{port}.sock")),
        port,
        cert,
        key,
        upstream_port: UPSTREAM_PORT,
        access_log,
    }
    .render()
}
