//! One sample of the daemon's state: `/metrics` scraped from the admin listener and parsed with
//! `prometheus-parse` (the parser the integration tests use), the entry counts of the pinned
//! ban and limiter maps read directly (the daemon exports active bans but no map sizes), and a
//! snapshot of the clients' own counters.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{bail, Context as _, Result};
use api_shield::fastpath::PinnedMaps;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

use super::counts::Snapshot;

/// Where in the run a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before any traffic.
    Baseline,
    /// The first third of the traffic.
    WarmUp,
    /// The rest of the traffic.
    Steady,
    /// After the hostile traffic stopped (legitimate clients still running).
    CoolDown,
}

impl Phase {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::WarmUp => "warm-up",
            Phase::Steady => "steady",
            Phase::CoolDown => "cool-down",
        }
    }
}

/// The figures of one sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the traffic started.
    pub t: u64,
    /// Phase.
    pub phase: Phase,
    /// `process_resident_memory_bytes`.
    pub rss: f64,
    /// `process_open_fds`.
    pub fds: f64,
    /// `api_shield_connections_open`, when the daemon exports it.
    pub connections: Option<f64>,
    /// `api_shield_xdp_active_bans`.
    pub active_bans: f64,
    /// Entries in the pinned `BANS` map (expired ones until the daemon sweeps them).
    pub ban_entries: usize,
    /// Entries in the pinned `LIMITER` map.
    pub limiter_entries: usize,
    /// `api_shield_requests_total` by status class: 2xx, 4xx, 5xx.
    pub requests: [f64; 3],
    /// `api_shield_escalation_bans_total`, all rules.
    pub escalation_bans: f64,
    /// `api_shield_xdp_packets_total{action="drop",reason="banned"}`.
    pub banned_drops: f64,
    /// `api_shield_upstream_errors_total`, all kinds.
    pub upstream_errors: f64,
    /// `api_shield_tls_handshake_failures_total`.
    pub tls_failures: f64,
    /// The clients' counters.
    pub client: Snapshot,
}

/// Takes a sample.
pub async fn take(
    admin: SocketAddr,
    layout: &Path,
    t: u64,
    phase: Phase,
    client: Snapshot,
) -> Result<Sample> {
    let scrape = scrape(admin).await?;
    let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .filter_map(|s| value(&s.value))
            .sum()
    };
    let exported = |name: &str| scrape.samples.iter().any(|s| s.metric == name);
    for name in ["process_resident_memory_bytes", "process_open_fds"] {
        if !exported(name) {
            bail!("/metrics has no {name}");
        }
    }
    let mut requests = [0.0; 3];
    for s in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "api_shield_requests_total")
    {
        let class = match s.labels.get("code").and_then(|c| c.chars().next()) {
            Some('2') => 0,
            Some('4') => 1,
            Some('5') => 2,
            _ => continue,
        };
        requests[class] += value(&s.value).unwrap_or(0.0);
    }
    let maps = PinnedMaps::open(layout).context("opening the pinned maps")?;
    Ok(Sample {
        t,
        phase,
        rss: sum("process_resident_memory_bytes", &[]),
        fds: sum("process_open_fds", &[]),
        connections: exported("api_shield_connections_open")
            .then(|| sum("api_shield_connections_open", &[])),
        active_bans: sum("api_shield_xdp_active_bans", &[]),
        ban_entries: maps.bans.keys().flatten().count(),
        limiter_entries: maps.limiter.keys().flatten().count(),
        requests,
        escalation_bans: sum("api_shield_escalation_bans_total", &[]),
        banned_drops: sum(
            "api_shield_xdp_packets_total",
            &[("action", "drop"), ("reason", "banned")],
        ),
        upstream_errors: sum("api_shield_upstream_errors_total", &[]),
        tls_failures: sum("api_shield_tls_handshake_failures_total", &[]),
        client,
    })
}

fn value(value: &prometheus_parse::Value) -> Option<f64> {
    match value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(*v),
        _ => None,
    }
}

/// GET /metrics over HTTP/1.1 on a fresh connection, parsed.
async fn scrape(admin: SocketAddr) -> Result<prometheus_parse::Scrape> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(admin).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        let conn = tokio::spawn(conn);
        let request = http::Request::get("/metrics")
            .header(http::header::HOST, "admin")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            bail!("/metrics answered {}", response.status());
        }
        let body = response.into_body().collect().await?.to_bytes();
        drop(sender);
        let _ = conn.await;
        Ok::<_, anyhow::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("/metrics did not answer within 10 s")??;
    let text = String::from_utf8(body.to_vec()).context("/metrics is not UTF-8")?;
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .context("/metrics is not valid Prometheus text")
}
