//! bench-proxy: requests/s and p50/p99 latency over TLS with keep-alive for (a) the upstream
//! directly (plain HTTP), (b) nginx as TLS reverse proxy with HSTS, (c) api-shield with the same
//! certificate, upstream and a route with CORS and HSTS; and api-shield with a 1 KiB JSON POST
//! on (d) a route without policies and (e) a route with the full policy chain (JWT RS256 with
//! scopes, a rate limit that never refuses, JSON Schema validation of the body), (d) and (e)
//! sent the very same request, and (f) the route of (d) sent that request without its bearer
//! token (the baseline before 2026-11-29). One run, peers interleaved, three rounds each, medians
//! and ratios to nginx, and the ratios of (e) to (d) and to (f), per round (median and spread)
//! and of their medians (see docs/benchmarking.md).
//!
//! Run it with `cargo xtask bench-proxy` (as root: it installs nginx and wrk if missing).

#[path = "../child_guard.rs"]
mod child_guard;
// Shared with bench-gateway, which uses the HTTP/2 half too.
#[allow(dead_code)]
#[path = "../proxy_peers.rs"]
mod proxy_peers;
#[path = "../shield_cli.rs"]
mod shield_cli;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::{
    child_guard::Guard,
    proxy_peers::{
        certificate, ensure_port_free, median, middle, nginx, wait_for_port, wrk, Run, ShieldConfig,
    },
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-proxy")]
struct Args {
    /// Rounds per peer.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// Run only the peers whose names contain this (for profiling one peer).
    #[arg(long)]
    only: Option<String>,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-proxy.md")]
    output: PathBuf,
    /// Another build of api-shield (an earlier commit's release binary, say) run beside this
    /// one with the same config on its own port; its three api-shield peers run interleaved
    /// with this build's, and the report gives this build's ratios to it, round by round.
    #[arg(long)]
    baseline_binary: Option<PathBuf>,
}

const UPSTREAM_PORT: u16 = 18080;
const NGINX_PORT: u16 = 18443;
const SHIELD_PORT: u16 = 18444;
const BASELINE_PORT: u16 = 18446;

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let (cert, key) = certificate(dir.path())?;
    for port in [UPSTREAM_PORT, NGINX_PORT, SHIELD_PORT] {
        ensure_port_free(port)?;
    }
    let _upstream = nginx(dir.path(), "upstream", &upstream_conf(dir.path()))?;
    let _nginx = nginx(dir.path(), "proxy", &proxy_conf(dir.path(), &cert, &key))?;
    let (_shield, config) = shield(
        &shield_cli::binary(),
        dir.path(),
        SHIELD_PORT,
        &cert,
        &key,
        true,
    )?;
    for port in [UPSTREAM_PORT, NGINX_PORT, SHIELD_PORT] {
        wait_for_port(port)?;
    }
    let _baseline = match &args.baseline_binary {
        Some(binary) => Some(start_baseline(binary, dir.path(), &cert, &key)?),
        None => None,
    };
    // A token for the chain route.
    let token = shield_cli::mint_token(&config, "bench", "bench-client", "orders:write")?;
    // The plain route gets the very same request, bearer token included (it has no policy to
    // read it), so the ratio of the two is what the policies cost, not what a bigger request
    // costs to decrypt, parse and forward. The same POST without the token, the baseline
    // before 2026-11-29, runs interleaved too, and its ratios are printed beside.
    let plain_script = post_script(dir.path(), "plain", Some(&token))?;
    let bare_script = post_script(dir.path(), "bare", None)?;
    let chain_script = post_script(dir.path(), "chain", Some(&token))?;
    let mut scripts = vec![
        None,
        None,
        None,
        Some(&plain_script),
        Some(&chain_script),
        Some(&chain_script),
        Some(&bare_script),
    ];
    let mut peers = peer_list();
    if args.baseline_binary.is_some() {
        // The baseline build's api-shield peers: the same requests on its own port.
        for (&peer, name) in BASELINE_OF.iter().zip(BASELINE_NAMES) {
            let url = peers[peer]
                .1
                .replace(&format!(":{SHIELD_PORT}/"), &format!(":{BASELINE_PORT}/"));
            peers.push((name, url));
            scripts.push(scripts[peer]);
        }
    }
    let order = run_order(peers.len());
    let mut results: Vec<Vec<Run>> = vec![Vec::new(); peers.len()];
    for round in 0..args.rounds {
        for &i in &order {
            let (name, url) = &peers[i];
            if args
                .only
                .as_ref()
                .is_some_and(|only| !name.contains(only.as_str()))
            {
                continue;
            }
            let run = wrk(url, scripts[i], args.seconds, args.connections)?;
            eprintln!(
                "round {round} {name:<30} {:>9.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
                run.rps, run.p50_ms, run.p99_ms
            );
            results[i].push(run);
        }
    }
    if args.only.is_some() {
        // A partial run: the ratios of whatever peers ran, no table.
        let names: Vec<&str> = peers.iter().map(|(name, _)| *name).collect();
        println!(
            "{}{}",
            policy_ratios(&results),
            baseline_ratios(&names, &results)
        );
        return Ok(());
    }
    let medians: Vec<Run> = results.iter().map(|runs| median(runs)).collect();
    let names: Vec<&str> = peers.iter().map(|(name, _)| *name).collect();
    let text = report(&args, &names, &medians, &results);
    println!("{text}");
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, text)?;
    Ok(())
}

/// The Markdown table of medians and the policy-chain ratios.
fn report(args: &Args, names: &[&str], medians: &[Run], results: &[Vec<Run>]) -> String {
    use std::fmt::Write as _;
    let nginx = medians[1];
    let mut text = format!(
        "Command: `cargo xtask bench-proxy -- --rounds {} --seconds {} --connections {}` \
         (wrk -t1 -c{} -d{}s --latency; nginx 1 worker, api-shield 1 worker thread)\n\n",
        args.rounds, args.seconds, args.connections, args.connections, args.seconds
    );
    text.push_str("| peer | req/s (median) | p50 ms | p99 ms | req/s ÷ nginx | p99 ÷ nginx |\n|---|---|---|---|---|---|\n");
    for (name, run) in names.iter().zip(medians) {
        let _ = writeln!(
            text,
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2}x | {:.2}x |",
            run.rps,
            run.p50_ms,
            run.p99_ms,
            run.rps / nginx.rps,
            run.p99_ms / nginx.p99_ms
        );
    }
    text.push('\n');
    text.push_str(&policy_ratios(results));
    text.push_str(&baseline_ratios(names, results));
    text
}

/// This build's peers and their URLs, in `main`'s order (see the indexes below).
fn peer_list() -> Vec<(&'static str, String)> {
    vec![
        (
            "upstream direct (HTTP)",
            format!("http://127.0.0.1:{UPSTREAM_PORT}/"),
        ),
        (
            "nginx (TLS, HSTS)",
            format!("https://127.0.0.1:{NGINX_PORT}/"),
        ),
        (
            "api-shield (TLS, HSTS, CORS)",
            format!("https://127.0.0.1:{SHIELD_PORT}/api/ping"),
        ),
        (
            "api-shield POST 1 KiB, no policies",
            format!("https://127.0.0.1:{SHIELD_PORT}/plain/orders"),
        ),
        (
            "api-shield POST 1 KiB, JWT + rate limit + schema",
            format!("https://127.0.0.1:{SHIELD_PORT}/chain/orders"),
        ),
        (
            "api-shield POST 1 KiB, JWT + rate limit",
            format!("https://127.0.0.1:{SHIELD_PORT}/auth/orders"),
        ),
        (
            "api-shield POST 1 KiB, no policies, no token",
            format!("https://127.0.0.1:{SHIELD_PORT}/plain/orders"),
        ),
    ]
}

/// Starts the baseline build on its own port, its files in a directory of its own.
fn start_baseline(binary: &Path, dir: &Path, cert: &Path, key: &Path) -> Result<(Guard, PathBuf)> {
    ensure_port_free(BASELINE_PORT)?;
    let dir = dir.join("baseline");
    std::fs::create_dir_all(&dir)?;
    let started = shield(binary, &dir, BASELINE_PORT, cert, key, false)?;
    wait_for_port(BASELINE_PORT)?;
    Ok(started)
}

/// The order peers run in each round: `main`'s list, each baseline peer (when there are
/// `peers`) right after the peer it is compared with.
fn run_order(peers: usize) -> Vec<usize> {
    let mut order = Vec::new();
    for i in 0..=BARE {
        order.push(i);
        if let Some(k) = BASELINE_OF.iter().position(|&p| p == i) {
            if BARE + 1 + k < peers {
                order.push(BARE + 1 + k);
            }
        }
    }
    order
}

/// Indexes of the POST peers in `main`'s list.
const PLAIN: usize = 3;
const CHAIN: usize = 4;
const AUTH: usize = 5;
const BARE: usize = 6;
/// This build's peers that a baseline build also runs (they follow `BARE`, in this order).
const BASELINE_OF: [usize; 3] = [2, PLAIN, CHAIN];
const BASELINE_NAMES: [&str; 3] = [
    "baseline build: api-shield (TLS, HSTS, CORS)",
    "baseline build: POST 1 KiB, no policies",
    "baseline build: POST 1 KiB, JWT + rate limit + schema",
];

/// This build's ratios to the baseline build, for the peers both ran.
fn baseline_ratios(names: &[&str], results: &[Vec<Run>]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (k, &peer) in BASELINE_OF.iter().enumerate() {
        let Some(base) = results.get(BARE + 1 + k).filter(|runs| !runs.is_empty()) else {
            continue;
        };
        let runs = &results[peer];
        if runs.is_empty() {
            continue;
        }
        let (p, b) = (median(runs), median(base));
        let _ = writeln!(
            text,
            "{} ÷ the baseline build: {:.3}x req/s, {:.2}x p99 (medians); per round {}",
            names[peer],
            p.rps / b.rps,
            p.p99_ms / b.p99_ms,
            per_round(runs, base)
        );
    }
    text
}

/// The policy routes' ratios to the plain route (same request) and to the plain route without
/// the token (the baseline before 2026-11-29), for the peers that ran.
fn policy_ratios(results: &[Vec<Run>]) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (peer, what) in [
        (CHAIN, "Full policy chain"),
        (AUTH, "JWT + rate limit (no schema)"),
    ] {
        for (baseline, against) in [
            (PLAIN, "the same POST on a route without policies"),
            (BARE, "that POST without the token (the former baseline)"),
        ] {
            let (runs, base) = (&results[peer], &results[baseline]);
            if runs.is_empty() || base.is_empty() {
                continue;
            }
            let (p, b) = (median(runs), median(base));
            let _ = writeln!(
                text,
                "{what} ÷ {against}: {:.3}x req/s, {:.2}x p99 (medians); per round {}",
                p.rps / b.rps,
                p.p99_ms / b.p99_ms,
                per_round(runs, base)
            );
        }
    }
    text
}

/// The req/s ratio of two peers round by round (each pair ran back to back): its median and
/// spread.
fn per_round(peer: &[Run], baseline: &[Run]) -> String {
    let mut ratios: Vec<f64> = peer
        .iter()
        .zip(baseline)
        .map(|(p, b)| p.rps / b.rps)
        .collect();
    ratios.sort_by(f64::total_cmp);
    match (ratios.first(), ratios.last()) {
        (Some(low), Some(high)) => format!(
            "median {:.3}x req/s (from {low:.3}x to {high:.3}x over {} rounds)",
            middle(&ratios),
            ratios.len()
        ),
        _ => "not measured".to_owned(),
    }
}

fn common_conf(dir: &Path, name: &str) -> String {
    format!(
        "worker_processes 1;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.error.log;\ndaemon off;\n\
         events {{ worker_connections 1024; }}\n",
        dir = dir.display()
    )
}

fn upstream_conf(dir: &Path) -> String {
    format!(
        "{}http {{\n access_log off;\n keepalive_requests 1000000;\n server {{\n  listen 127.0.0.1:{UPSTREAM_PORT};\n  \
         location / {{ default_type text/plain; return 200 \"ok\"; }}\n }}\n}}\n",
        common_conf(dir, "upstream")
    )
}

fn proxy_conf(dir: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "{}http {{\n access_log off;\n keepalive_requests 1000000;\n \
         limit_req_zone $binary_remote_addr zone=bench:10m rate=1000000r/s;\n \
         upstream api {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 64; }}\n server {{\n  \
         listen 127.0.0.1:{NGINX_PORT} ssl http2;\n  ssl_certificate {};\n  ssl_certificate_key {};\n  \
         ssl_protocols TLSv1.2 TLSv1.3;\n  \
         add_header Strict-Transport-Security \"max-age=31536000; includeSubDomains\" always;\n  \
         location / {{ limit_req zone=bench burst=1000000 nodelay; proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n }}\n}}\n",
        common_conf(dir, "proxy"),
        cert.display(),
        key.display()
    )
}

/// A `wrk` script sending a 1 KiB JSON order by POST, with a bearer token when given.
fn post_script(dir: &Path, name: &str, token: Option<&str>) -> Result<PathBuf> {
    let items: Vec<String> = (0..29)
        .map(|i| format!(r#"{{"sku": "SKU-{i:04}", "quantity": {}}}"#, i + 1))
        .collect();
    let body = format!(
        r#"{{"customer": "acme-corp", "note": "leave at the door", "items": [{}]}}"#,
        items.join(", ")
    );
    let mut script = format!(
        "wrk.method = \"POST\"\nwrk.body = [[{body}]]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    if let Some(token) = token {
        use std::fmt::Write as _;
        let _ = writeln!(
            script,
            "wrk.headers[\"Authorization\"] = \"Bearer {token}\""
        );
    }
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script)?;
    Ok(path)
}

/// Starts `binary` serving the benchmark's routes on `port`, its files in `dir`.
/// Access logs are off in this benchmark (bench-gateway measures them on): this build by
/// `[access_log] sink = "off"`, a baseline build (which may predate the table) by
/// `RUST_LOG=warn`, which silenced the access log of builds that wrote it through tracing.
fn shield(
    binary: &Path,
    dir: &Path,
    port: u16,
    cert: &Path,
    key: &Path,
    access_log_table: bool,
) -> Result<(Guard, PathBuf)> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jwt");
    // The schema the criterion benchmark of the policies uses too.
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/examples/order.schema.json");
    let base = ShieldConfig {
        workers: 1,
        admin: "127.0.0.1:0",
        control: &dir.join("control.sock"),
        port,
        cert,
        key,
        upstream_port: UPSTREAM_PORT,
        access_log: if access_log_table {
            "[access_log]\nsink = \"off\""
        } else {
            ""
        },
    }
    .render();
    let config = format!(
        r#"{base}
[[routes]]
name = "plain"
path = "/plain/*"
upstream = "api"

[[routes]]
name = "chain"
path = "/chain/*"
upstream = "api"
rate_limit = {{ rate = "1000000 per second", key = "subject" }}
[routes.auth]
jwt = ["bench"]
scopes = ["orders:write"]
[routes.validate]
content_types = ["application/json"]
body_schema = "{schema}"

[[routes]]
name = "auth"
path = "/auth/*"
upstream = "api"
rate_limit = {{ rate = "1000000 per second", key = "subject" }}
[routes.auth]
jwt = ["bench"]
scopes = ["orders:write"]

[[issuers]]
name = "bench"
issuer = "https://issuer.bench"
audiences = ["orders"]
algorithms = ["RS256"]
keys = ["{fixtures}/rsa-public.pem"]
signing_key = "{fixtures}/rsa-private.pem"
"#,
        schema = schema.display(),
        fixtures = fixtures.display(),
    );
    let path = dir.join("api-shield.toml");
    std::fs::write(&path, config)?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting api-shield (build it with cargo build --release first)")?;
    Ok((Guard(child), path))
}
