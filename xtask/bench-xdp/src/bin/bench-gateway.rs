//! bench-gateway: the proxy as deployed, against its peers as they are deployed. api-shield,
//! nginx and HAProxy as TLS reverse proxies in front of the same upstream (an nginx answering
//! `ok`), with the same ECDSA certificate and HSTS, each once with its access log on and once
//! with it off, over HTTP/1.1 (`wrk -t1 -c50`) and HTTP/2 (`h2load -t1 -c10 -m10`), at 1 and
//! at 2 workers. The logs, all to files on the same disk:
//! - api-shield: `[access_log] sink = "file"`, JSON lines (the shipped unit runs
//!   `--log-format json`);
//! - nginx: `access_log … combined buffer=64k flush=1s`;
//! - HAProxy (Debian's 2.6): `option httplog` to stdout, redirected to a file; `nbthread` equal
//!   to the workers, HSTS by `http-response set-header`, `http-reuse always`.
//!
//! Each round runs every peer once, the order rotated from round to round; the report gives
//! medians and api-shield's ratios to nginx and to HAProxy per log setting, protocol and worker
//! count (req/s, p99, and requests per CPU second of the proxy's own processes: on two CPUs
//! shared with the load generator and the upstream, throughput is bounded by all three, CPU per
//! request by the proxy alone), the bytes of log written per request, and, for api-shield with its log on, the
//! access-log lines written against the requests it served and the lines it dropped.
//!
//! Run it with `cargo xtask bench-gateway` (as root: it installs nginx, HAProxy, wrk and h2load
//! if missing).

#[path = "../child_guard.rs"]
mod child_guard;
#[allow(dead_code)]
#[path = "../process_cpu.rs"]
mod process_cpu;
#[path = "../proxy_peers.rs"]
mod proxy_peers;
// Only its path of the release binary.
#[path = "bench-gateway/peers.rs"]
mod peers;
#[allow(dead_code)]
#[path = "../shield_cli.rs"]
mod shield_cli;

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::{
    peers::{
        log_file, nginx_conf, start_baseline, start_haproxy, start_shield, upstream_conf, Proxy,
        Shield, SHIELD_ADMIN, UPSTREAM_PORT,
    },
    proxy_peers::{
        certificate, ensure_port_free, h2load, median, middle, nginx, wait_for_port, wrk, Run,
    },
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-gateway")]
struct Args {
    /// Rounds; each runs every peer once.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per load run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Worker counts to measure (each proxy gets the same).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// wrk connections (HTTP/1.1).
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// h2load clients (HTTP/2), each with `--streams` concurrent streams.
    #[arg(long, default_value_t = 10)]
    clients: u32,
    /// h2load concurrent streams per client.
    #[arg(long, default_value_t = 10)]
    streams: u32,
    /// An earlier build of api-shield (one without `[access_log]`, whose access log went
    /// through the daemon's stderr) run beside this one with its log on, stderr to a file on
    /// the same disk, so the report gives this build's ratio to it.
    #[arg(long)]
    baseline_binary: Option<PathBuf>,
    /// Run only the peers whose label (`api-shield HTTP/1.1 log on`, …) contains this, for
    /// profiling one; no report.
    #[arg(long)]
    only: Option<String>,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-gateway.md")]
    output: PathBuf,
}

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    proxy: Proxy,
    logged: bool,
    http2: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir_in(std::env::current_dir()?.join("target"))
        .or_else(|_| tempfile::tempdir())?;
    let (cert, key) = certificate(dir.path())?;
    let mut report = format!(
        "Command: `cargo xtask bench-gateway -- --rounds {} --seconds {} --workers {}` \
         (HTTP/1.1: wrk -t1 -c{} -d{}s; HTTP/2: h2load -t1 -c{} -m{} -D {}; medians of {} \
         rounds, the peer order rotated each round)\n\n",
        args.rounds,
        args.seconds,
        args.workers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.connections,
        args.seconds,
        args.clients,
        args.streams,
        args.seconds,
        args.rounds
    );
    for &workers in &args.workers {
        report.push_str(&measure(&args, dir.path(), &cert, &key, workers)?);
    }
    println!("{report}");
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, report)?;
    Ok(())
}

/// Starts every peer with `workers` workers, runs the rounds, and reports.
fn measure(args: &Args, dir: &Path, cert: &Path, key: &Path, workers: usize) -> Result<String> {
    let dir = dir.join(format!("workers-{workers}"));
    std::fs::create_dir_all(dir.join("logs"))?;
    let mut ports = vec![UPSTREAM_PORT, SHIELD_ADMIN, SHIELD_ADMIN + 1];
    ports.extend(
        Proxy::ALL
            .iter()
            .flat_map(|p| [p.port(true), p.port(false)]),
    );
    for &port in &ports {
        ensure_port_free(port)?;
    }
    let upstream = nginx(&dir, "upstream", &upstream_conf(&dir))?;
    let nginx_proxy = nginx(&dir, "proxy", &nginx_conf(&dir, cert, key, workers))?;
    let haproxy = start_haproxy(&dir, cert, key, workers)?;
    let mut shield_logged = start_shield(&dir, cert, key, workers, true)?;
    let shield_quiet = start_shield(&dir, cert, key, workers, false)?;
    let baseline = match &args.baseline_binary {
        Some(binary) => {
            ensure_port_free(Proxy::Baseline.port(true))?;
            ports.push(Proxy::Baseline.port(true));
            Some(start_baseline(binary, &dir, cert, key, workers)?)
        }
        None => None,
    };
    for &port in &ports {
        wait_for_port(port)?;
    }
    // Each peer's processes, whose CPU time is read around its runs (nginx and HAProxy serve
    // both log settings from one process).
    let shield_pid = |shield: &Shield| shield.0.as_ref().map_or(0, |guard| guard.0.id());
    let root = |peer: Peer| match (peer.proxy, peer.logged) {
        (Proxy::Shield, true) => shield_pid(&shield_logged),
        (Proxy::Shield, false) => shield_pid(&shield_quiet),
        (Proxy::Nginx, _) => nginx_proxy.0.id(),
        (Proxy::Haproxy, _) => haproxy.0.id(),
        (Proxy::Baseline, _) => baseline.as_ref().map_or(0, |guard| guard.0.id()),
    };
    let mut proxies = Proxy::ALL.to_vec();
    if baseline.is_some() {
        proxies.push(Proxy::Baseline);
    }
    let peers: Vec<Peer> = [false, true]
        .into_iter()
        .flat_map(|http2| {
            let proxies = &proxies;
            [true, false].into_iter().flat_map(move |logged| {
                proxies
                    .iter()
                    .filter(move |&&p| logged || p != Proxy::Baseline)
                    .map(move |&proxy| Peer {
                        proxy,
                        logged,
                        http2,
                    })
            })
        })
        .collect();
    let (results, cpu) = rounds(args, &dir, workers, &peers, root)?;
    if args.only.is_some() {
        return Ok(String::new());
    }
    let served = shield_served()?;
    // Stopped: every pending line written, then counted.
    shield_logged.stop();
    drop((baseline, shield_quiet, haproxy, nginx_proxy, upstream));
    let mut text = format!("### {workers} worker(s)\n\n");
    text.push_str(&table(&peers, &results, &cpu));
    text.push_str(&log_sizes(&dir, &peers, &results, args.seconds));
    let lines = count_lines(&dir.join("logs/api-shield.log"))?;
    let _ = writeln!(
        text,
        "api-shield's access log: {lines} lines for {} requests served, {} dropped.\n",
        served.requests, served.dropped
    );
    Ok(text)
}

/// One list of figures per peer, a figure per round.
type PerPeer<T> = Vec<Vec<T>>;

/// Every round: each peer once, the order rotated; the runs and the proxy's CPU per request
/// (µs) of each, per peer. `root` gives the process a peer's CPU time is read from.
fn rounds(
    args: &Args,
    dir: &Path,
    workers: usize,
    peers: &[Peer],
    root: impl Fn(Peer) -> u32,
) -> Result<(PerPeer<Run>, PerPeer<f64>)> {
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); peers.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    for round in 0..args.rounds as usize {
        for k in 0..peers.len() {
            let i = (k + round) % peers.len();
            let peer = peers[i];
            if args
                .only
                .as_ref()
                .is_some_and(|only| !label(peer).contains(only.as_str()))
            {
                continue;
            }
            let url = format!(
                "https://127.0.0.1:{}{}",
                peer.proxy.port(peer.logged),
                peer.proxy.path()
            );
            let before = process_cpu::tree_seconds(root(peer))?;
            let run = if peer.http2 {
                h2load(&url, args.seconds, args.clients, args.streams, dir)?
            } else {
                wrk(&url, None, args.seconds, args.connections)?
            };
            let used = process_cpu::tree_seconds(root(peer))? - before;
            let per_request_us = used * 1e6 / (run.rps * f64::from(args.seconds)).max(1.0);
            eprintln!(
                "workers {workers} round {round} {:<36} {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms  CPU {:.1} us/req",
                label(peer),
                run.rps,
                run.p50_ms,
                run.p99_ms,
                per_request_us
            );
            results[i].push(run);
            cpu[i].push(per_request_us);
        }
    }
    Ok((results, cpu))
}

fn label(peer: Peer) -> String {
    format!(
        "{} {} log {}",
        peer.proxy.name(),
        if peer.http2 { "HTTP/2" } else { "HTTP/1.1" },
        if peer.logged { "on" } else { "off" }
    )
}

/// The medians and api-shield's ratios to the others with the same log setting and protocol.
/// CPU per request is the proxy's own (all its processes and threads), the load generator and
/// the upstream left out; its ratio is the peer's ÷ api-shield's (above 1: api-shield serves
/// more requests per CPU second).
fn table(peers: &[Peer], results: &[Vec<Run>], cpu: &[Vec<f64>]) -> String {
    let mut text = String::from(
        "| protocol | log | peer | req/s | p50 ms | p99 ms | CPU µs/req | api-shield ÷ peer req/s | api-shield ÷ peer p99 | api-shield ÷ peer req per CPU second |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let shield_of = |peer: &Peer| {
        peers
            .iter()
            .position(|p| {
                p.proxy == Proxy::Shield && p.logged == peer.logged && p.http2 == peer.http2
            })
            .expect("api-shield runs in every setting")
    };
    for (i, peer) in peers.iter().enumerate() {
        let run = median(&results[i]);
        let cost = middle_of(&cpu[i]);
        let s = shield_of(peer);
        let shield = median(&results[s]);
        let shield_cost = middle_of(&cpu[s]);
        let ratios = if peer.proxy == Proxy::Shield {
            "| | | ".to_owned()
        } else {
            format!(
                "| {:.2}x | {:.2}x | {:.2}x",
                shield.rps / run.rps,
                shield.p99_ms / run.p99_ms,
                cost / shield_cost
            )
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} {ratios} |",
            if peer.http2 { "HTTP/2" } else { "HTTP/1.1" },
            if peer.logged { "on" } else { "off" },
            peer.proxy.name(),
            run.rps,
            run.p50_ms,
            run.p99_ms,
            cost
        );
    }
    text.push('\n');
    text
}

/// The median of the rounds' figures.
fn middle_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    middle(&sorted)
}

/// Bytes of access log per request, from each file's size and the requests measured.
fn log_sizes(dir: &Path, peers: &[Peer], results: &[Vec<Run>], seconds: u32) -> String {
    let mut text = String::from("Access log written per request: ");
    for proxy in Proxy::ALL.into_iter().chain([Proxy::Baseline]) {
        let bytes = std::fs::metadata(log_file(dir, proxy)).map_or(0, |m| m.len());
        let requests: f64 = peers
            .iter()
            .zip(results)
            .filter(|(p, _)| p.proxy == proxy && p.logged)
            .flat_map(|(_, runs)| runs.iter().map(|r| r.rps * f64::from(seconds)))
            .sum();
        if requests == 0.0 {
            continue;
        }
        let _ = write!(
            text,
            "{} {:.0} bytes; ",
            proxy.name(),
            bytes as f64 / requests.max(1.0)
        );
    }
    text.push_str("(about: from req/s × seconds)\n\n");
    text
}

/// Lines in `path`, read in 1 MiB pieces (the file holds millions of lines).
// Once per run, over one file: not worth the bytecount crate.
#[allow(clippy::naive_bytecount)]
fn count_lines(path: &Path) -> Result<usize> {
    use std::io::Read as _;
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut piece = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut piece)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += piece[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

struct Served {
    requests: u64,
    dropped: u64,
}

/// Requests the logged api-shield served and access-log lines it dropped, from its /metrics.
fn shield_served() -> Result<Served> {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", SHIELD_ADMIN))?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")?;
    let mut body = String::new();
    tcp.read_to_string(&mut body)?;
    let sum = |prefix: &str| -> u64 {
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok(Served {
        requests: sum("api_shield_requests_total{"),
        dropped: sum("api_shield_access_log_dropped_total"),
    })
}
