//! What the proxy benchmarks share (`#[path]`): the ECDSA certificate, nginx started on a
//! config, api-shield's config with its one CORS route, waiting for ports, and the load generators: wrk for HTTP/1.1 and h2load for HTTP/2,
//! each run reduced to req/s, p50 and p99.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::child_guard::Guard;

/// One load run's result.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
}

/// The median of sorted values: the mean of the two middle ones for an even count.
pub fn middle(sorted: &[f64]) -> f64 {
    let half = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        f64::midpoint(sorted[half - 1], sorted[half])
    } else {
        sorted[half]
    }
}

/// The median of each figure over `runs`.
pub fn median(runs: &[Run]) -> Run {
    let pick = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        middle(&v)
    };
    Run {
        rps: pick(|r| r.rps),
        p50_ms: pick(|r| r.p50_ms),
        p99_ms: pick(|r| r.p99_ms),
    }
}

/// An ECDSA P-256 self-signed certificate for 127.0.0.1 (wrk does not verify).
pub fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    let cert = dir.join("bench.pem");
    let key = dir.join("bench.key");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok((cert, key))
}

/// Starts nginx on `conf` (written to `dir/name.conf` and checked first), its prefix `dir`.
pub fn nginx(dir: &Path, name: &str, conf: &str) -> Result<Guard> {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf)?;
    let check = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .output()?;
    if !check.status.success() {
        bail!(
            "nginx config {name}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Guard(child))
}

/// api-shield in front of the upstream: one TLS listener and the route `api` (`/api/*`, CORS for
/// one origin, HSTS and the security headers by default); a benchmark adds its own routes and
/// tables after [`ShieldConfig::render`]'s text.
pub struct ShieldConfig<'a> {
    /// `proxy.workers`.
    pub workers: usize,
    /// `admin.bind`.
    pub admin: &'a str,
    /// `control.socket`.
    pub control: &'a Path,
    /// The listener's port on 127.0.0.1.
    pub port: u16,
    /// The certificate and its key.
    pub cert: &'a Path,
    pub key: &'a Path,
    /// The upstream's port on 127.0.0.1.
    pub upstream_port: u16,
    /// The `[access_log]` table, or nothing (for builds that predate it).
    pub access_log: &'a str,
}

impl ShieldConfig<'_> {
    /// The config text.
    pub fn render(&self) -> String {
        format!(
            r#"
[fastpath]
enabled = false

[proxy]
workers = {workers}

[admin]
bind = "{admin}"

[control]
socket = "{control}"

{access_log}

[[listeners]]
bind = "127.0.0.1:{port}"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "api"
url = "http://127.0.0.1:{upstream_port}"

[[routes]]
name = "api"
path = "/api/*"
upstream = "api"
[routes.cors]
origins = ["https://app.example.com"]
"#,
            workers = self.workers,
            admin = self.admin,
            control = self.control.display(),
            access_log = self.access_log,
            port = self.port,
            cert = self.cert.display(),
            key = self.key.display(),
            upstream_port = self.upstream_port,
        )
    }
}

/// Fails when something already listens on `port`: the run would measure it instead of the
/// server it starts.
pub fn ensure_port_free(port: u16) -> Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port)).with_context(|| {
        format!(
            "port {port} is taken (a server left over from an earlier run? see `ss -ltnp sport = :{port}`)"
        )
    })?;
    Ok(())
}

/// Waits up to 20 s for something to listen on `port`.
pub fn wait_for_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// `wrk -t1 -cN -dNs --latency` against `url`, with a Lua script when given; non-2xx
/// answers or socket errors fail the run.
pub fn wrk(url: &str, script: Option<&PathBuf>, seconds: u32, connections: u32) -> Result<Run> {
    let mut command = Command::new("wrk");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let out = command
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            url,
        ])
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no Requests/sec in wrk output:\n{text}"))?;
    let percentile = |p: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .and_then(|v| millis(v.trim()))
            .with_context(|| format!("no {p} latency in wrk output:\n{text}"))
    };
    let errors = text
        .lines()
        .any(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    if errors {
        bail!("wrk saw errors against {url}:\n{text}");
    }
    Ok(Run {
        rps,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
    })
}

/// wrk's `1.23ms`, `456.00us` or `1.01s` in milliseconds.
pub fn millis(value: &str) -> Option<f64> {
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        _ => return None,
    })
}

/// `h2load -t1 -cN -mM -D seconds` against `url` over HTTP/2 (TLS, ALPN h2); p50 and p99 from
/// its per-request log (`--log-file`: status and microseconds per request). Any request not
/// answered 2xx fails the run.
pub fn h2load(url: &str, seconds: u32, clients: u32, streams: u32, dir: &Path) -> Result<Run> {
    let log = dir.join("h2load.tsv");
    let out = Command::new("h2load")
        .args([
            "-t1",
            &format!("-c{clients}"),
            &format!("-m{streams}"),
            "-D",
            &seconds.to_string(),
            "--log-file",
        ])
        .arg(&log)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "finished in 10.00s, 31415.90 req/s, 1.23MB/s"
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.strip_suffix(" req/s"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no req/s in h2load output:\n{text}"))?;
    // "requests: 314159 total, 314159 started, 314159 done, 314159 succeeded, 0 failed, ..."
    let failed = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split(", ").find_map(|part| part.strip_suffix(" failed")))
        .and_then(|v| v.parse::<u64>().ok())
        .with_context(|| format!("no request counts in h2load output:\n{text}"))?;
    let non_2xx = text
        .lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .is_some_and(|l| {
            l.split(", ")
                .filter(|part| !part.ends_with(" 2xx"))
                .any(|part| !part.starts_with("0 "))
        });
    if failed > 0 || non_2xx {
        bail!("h2load saw errors against {url}:\n{text}");
    }
    let mut micros: Vec<f64> = std::fs::read_to_string(&log)
        .context("reading h2load's log")?
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .collect();
    std::fs::remove_file(&log)?;
    if micros.is_empty() {
        bail!("h2load logged no request against {url}:\n{text}");
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| {
        // Nearest rank.
        let rank = ((q * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
        micros[rank - 1] / 1000.0
    };
    Ok(Run {
        rps,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}
