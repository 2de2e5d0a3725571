//! bench-flood: what an operator buys from the fast path, measured as legitimate service during
//! floods rather than as the cost of a drop. Two network namespaces joined by a veth (native
//! XDP), the release daemon in the receiver in front of an nginx upstream, with the shipped
//! limiter defaults (`rate = 1000`, `burst = 2000` on tcp/443). Three states side by side:
//! api-shield's fast path, a tuned nftables ruleset (a per-source SYN meter and limit, the
//! kernel's SYN cookies on) with the fast path off, and no filter. Under each attack (none, a
//! random-source SYN flood, a random-source ACK flood, both from hping3 in the sender) it
//! measures a keep-alive client (wrk, 10 connections: req/s, p99) and a stream of new clients
//! (a fresh TLS connection each, from addresses never seen before: how many succeed, connect
//! time p50/p99).
//!
//! This is the first part of the benchmark issue 23 asks for. It does not yet cover the UDP
//! floods, the single-source flood, the 10 000-source "botnet", the in-kernel generator at full
//! speed, the NAT-like client or the rate at which goodput halves.
//!
//! Run it with `cargo xtask bench-flood` (as root: installs nginx, wrk, hping3, curl and nftables
//! if missing).

// Shared with bench-xdp and bench-proxy, which use parts this benchmark does not.
#[path = "../legit_load.rs"]
mod legit_load;
#[allow(dead_code)]
#[path = "../shield_cli.rs"]
mod shield_cli;
#[allow(dead_code)]
#[path = "../topology.rs"]
mod topology;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::{
    legit_load::{new_addresses, new_clients, percentile, wrk},
    topology::{ip, run, Topology},
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-flood")]
struct Args {
    /// Seconds of keep-alive load per cell.
    #[arg(long, default_value_t = 8)]
    seconds: u32,
    /// New clients per cell (each from an address never seen before).
    #[arg(long, default_value_t = 60)]
    new_clients: u32,
    /// Measure only the cells whose "attack / state" name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-flood.md")]
    output: std::path::PathBuf,
}

const RX: &str = "10.202.1.2";
const UPSTREAM_PORT: u16 = 18080;

/// What filters the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Shield,
    Nftables,
    NoFilter,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Shield => "api-shield (XDP, default limiter)",
            State::Nftables => "nftables (SYN meter), SYN cookies",
            State::NoFilter => "no filter (SYN cookies)",
        }
    }
}

/// What the sender floods with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    None,
    SynFlood,
    AckFlood,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::None => "no attack",
            Attack::SynFlood => "random-source SYN flood",
            Attack::AckFlood => "random-source ACK flood",
        }
    }

    fn hping_flag(self) -> Option<&'static str> {
        match self {
            Attack::None => None,
            Attack::SynFlood => Some("-S"),
            Attack::AckFlood => Some("-A"),
        }
    }
}

/// One cell of the table.
struct Cell {
    attack: Attack,
    state: State,
    keepalive_rps: f64,
    keepalive_p99_ms: f64,
    new_ok: u32,
    new_total: u32,
    connect_p50_ms: f64,
    connect_p99_ms: f64,
    flood_pps: f64,
    /// The fast path's drops by reason during the cell (api-shield's state only).
    xdp_drops: String,
}

/// A child process killed (and its process group with it) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-flood needs root (network namespaces, XDP, nftables)");
    }
    let dir = tempfile::tempdir()?;
    let topology = Topology::new()?;
    // bench-xdp coalesces the receiver's interrupts to measure CPU per packet; here latency is
    // measured, so the receiver's NAPI polls at once, as a host's default does.
    let sysfs = format!("/sys/class/net/{}", topology.rx_if);
    netns_exec(
        &topology.rx_ns,
        &[
            "sh",
            "-c",
            &format!("echo 0 > {sysfs}/gro_flush_timeout && echo 0 > {sysfs}/napi_defer_hard_irqs"),
        ],
    )?;
    // The receiver routes its answers back through the sender (as a host's default gateway
    // would) and takes packets from any source (no reverse-path filter): the bare kernel sees
    // the flood as it would from the internet.
    ip(&[
        "-n",
        &topology.rx_ns,
        "route",
        "add",
        "default",
        "via",
        "10.202.0.254",
    ])?;
    for key in ["all", "default", topology.rx_if.as_str()] {
        netns_exec(
            &topology.rx_ns,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
        )?;
    }
    netns_exec(
        &topology.rx_ns,
        &["sysctl", "-qw", "net.ipv4.tcp_syncookies=1"],
    )?;
    let (cert, key) = certificate(dir.path())?;
    let _upstream = upstream(&topology.rx_ns, dir.path())?;
    let mut cells = Vec::new();
    let mut block = 100u8;
    for attack in [Attack::None, Attack::SynFlood, Attack::AckFlood] {
        for state in [State::Shield, State::Nftables, State::NoFilter] {
            let name = format!("{} / {}", attack.name(), state.name());
            if args
                .only
                .as_ref()
                .is_some_and(|only| !name.contains(only.as_str()))
            {
                continue;
            }
            let clients = new_addresses(&topology, block, args.new_clients)?;
            block = block.wrapping_add(1);
            let cell = measure(
                &topology,
                dir.path(),
                &cert,
                &key,
                &args,
                attack,
                state,
                &clients,
            )?;
            eprintln!(
                "{:<24} {:<36} keep-alive {:>7.0} req/s p99 {:>7.1} ms | new clients {}/{} connect p50 {:>7.1} ms p99 {:>7.1} ms | flood {:>8.0} pps",
                attack.name(),
                state.name(),
                cell.keepalive_rps,
                cell.keepalive_p99_ms,
                cell.new_ok,
                cell.new_total,
                cell.connect_p50_ms,
                cell.connect_p99_ms,
                cell.flood_pps,
            );
            cells.push(cell);
        }
    }
    let text = report(&args, &cells);
    println!("{text}");
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, text)?;
    Ok(())
}

/// One state under one attack: the daemon (and the nftables ruleset) set up, the flood started,
/// both legitimate loads measured, everything stopped.
#[allow(clippy::too_many_arguments)]
fn measure(
    topology: &Topology,
    dir: &Path,
    cert: &Path,
    key: &Path,
    args: &Args,
    attack: Attack,
    state: State,
    clients: &[String],
) -> Result<Cell> {
    let shield = shield(topology, dir, cert, key, state == State::Shield)?;
    if state == State::Nftables {
        netns_exec_stdin(&topology.rx_ns, &["nft", "-f", "-"], NFT_RULES)?;
    }
    let mut flood = match attack.hping_flag() {
        Some(flag) => Some(Guard(
            Command::new("timeout")
                .args(["-s", "INT", "120", "ip", "netns", "exec", &topology.tx_ns])
                .args(["hping3", flag, "-p", "443", "--flood", "--rand-source", RX])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting hping3")?,
        )),
        None => None,
    };
    // Let the flood reach its rate before measuring.
    std::thread::sleep(Duration::from_secs(1));
    if let Some(Guard(child)) = &mut flood {
        if let Some(status) = child.try_wait()? {
            bail!("hping3 ended at once ({status}): the flood would not be measured");
        }
    }
    let packets_before = rx_packets(topology)?;
    let started = Instant::now();
    let (keepalive_rps, keepalive_p99_ms) = wrk(&topology.tx_ns, args.seconds)?;
    let (new_ok, connects) = new_clients(&topology.tx_ns, clients)?;
    let flood_pps =
        (rx_packets(topology)? - packets_before) as f64 / started.elapsed().as_secs_f64();
    drop(flood);
    let xdp_drops = if state == State::Shield {
        xdp_drops(&dir.join("api-shield.toml"))?
    } else {
        "-".to_owned()
    };
    if state == State::Nftables {
        netns_exec(
            &topology.rx_ns,
            &["nft", "delete", "table", "inet", "asx_flood"],
        )?;
    }
    drop(shield);
    Ok(Cell {
        attack,
        state,
        keepalive_rps,
        keepalive_p99_ms,
        new_ok,
        new_total: u32::try_from(clients.len()).unwrap_or(u32::MAX),
        connect_p50_ms: percentile(&connects, 0.50),
        connect_p99_ms: percentile(&connects, 0.99),
        flood_pps,
        xdp_drops,
    })
}

/// The fast path's drop counters that moved (`api-shield stats`), as `reason packets, ...`.
fn xdp_drops(config: &Path) -> Result<String> {
    let out = Command::new(shield_cli::binary())
        .args(["stats", "--json", "--config"])
        .arg(config)
        .output()?;
    if !out.status.success() {
        bail!("api-shield stats: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let drops: Vec<String> = report["counters"]
        .as_array()
        .context("counters")?
        .iter()
        .filter(|c| c["action"] == "drop" && c["packets"].as_u64().unwrap_or(0) > 0)
        .map(|c| format!("{} {}", c["reason"].as_str().unwrap_or("?"), c["packets"]))
        .collect();
    Ok(if drops.is_empty() {
        "none".to_owned()
    } else {
        drops.join(", ")
    })
}

/// A per-source SYN meter and limit for tcp/443 (the kernel's SYN cookies stay on): what an
/// operator would write in nftables for the same protection.
const NFT_RULES: &str = "table inet asx_flood {\n\
  chain input {\n\
    type filter hook input priority -10; policy accept;\n\
    tcp dport 443 tcp flags & (syn | ack) == syn meter asx_syn4 { ip saddr limit rate over 50/second burst 100 packets } drop\n\
  }\n\
}\n";

/// The release daemon in the receiver, on 10.202.1.2:443, the fast path on or off.
fn shield(
    topology: &Topology,
    dir: &Path,
    cert: &Path,
    key: &Path,
    fastpath: bool,
) -> Result<Shield> {
    // Maps of their own for each cell, so no limiter state carries over from the flood before.
    let pins = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/asx-flood-{}-{}",
        std::process::id(),
        CELLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let config = format!(
        r#"
[fastpath]
enabled = {fastpath}
interfaces = ["{rx_if}"]
pin_dir = "{pins}"
runtime_dir = "{run}"

[admin]
bind = "127.0.0.1:0"

[control]
socket = "{control}"

[proxy]
workers = 1

[[listeners]]
bind = "{RX}:443"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "api"
url = "http://127.0.0.1:{UPSTREAM_PORT}"

[[routes]]
name = "api"
path = "/*"
upstream = "api"
"#,
        rx_if = topology.rx_if,
        pins = pins.display(),
        run = dir.join("run").display(),
        control = dir.join("control.sock").display(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.join("api-shield.toml");
    std::fs::write(&path, config)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &topology.rx_ns])
        .arg(shield_cli::binary())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting api-shield (build it with cargo build --release first)")?;
    let shield = Shield {
        daemon: Some(Guard(child)),
        pins,
    };
    wait_for_https(&topology.tx_ns)?;
    Ok(shield)
}

/// Cells measured so far (names each cell's pin directory).
static CELLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The daemon of one cell; dropped, it stops and its maps are unpinned.
struct Shield {
    daemon: Option<Guard>,
    pins: std::path::PathBuf,
}

impl Drop for Shield {
    fn drop(&mut self) {
        // The daemon stops (and detaches) before its maps are unpinned.
        drop(self.daemon.take());
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

/// Waits until the daemon answers over HTTPS from the sender.
fn wait_for_https(tx_ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                tx_ns,
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-m",
                "2",
            ])
            .arg(format!("https://{RX}/"))
            .status()?;
        if status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("api-shield did not answer on {RX}:443 within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The upstream: an nginx worker in the receiver answering `200 ok`.
fn upstream(rx_ns: &str, dir: &Path) -> Result<Guard> {
    let conf = dir.join("upstream.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n keepalive_requests 1000000;\n server {{\n  listen 127.0.0.1:{UPSTREAM_PORT};\n  \
             location / {{ default_type text/plain; return 200 \"ok\"; }}\n }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            dir = dir.display(),
        ),
    )?;
    let child = Command::new("ip")
        .args(["netns", "exec", rx_ns, "nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Guard(child))
}

/// A self-signed certificate for the receiver's address.
fn certificate(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let generated = rcgen::generate_simple_self_signed(vec![RX.to_owned()])?;
    let cert = dir.join("flood.pem");
    let key = dir.join("flood.key");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok((cert, key))
}

/// Packets the receiver's veth has taken in (XDP drops included: they are counted on receive).
fn rx_packets(topology: &Topology) -> Result<u64> {
    let out = ip(&[
        "-n",
        &topology.rx_ns,
        "-s",
        "-j",
        "link",
        "show",
        "dev",
        &topology.rx_if,
    ])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    json[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("rx packets")
}

fn netns_exec(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full, None)
}

fn netns_exec_stdin(ns: &str, args: &[&str], stdin: &str) -> Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full, Some(stdin))
}

/// The Markdown table, with each measure's ratio to the same state without an attack.
fn report(args: &Args, cells: &[Cell]) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "Command: `cargo xtask bench-flood -- --seconds {} --new-clients {}` (wrk -t1 -c10 \
         --latency; new clients: one curl each from a never-seen address, six at a time; floods: \
         hping3 --flood --rand-source to tcp/443)\n\n",
        args.seconds, args.new_clients
    );
    text.push_str(
        "| attack | state | keep-alive req/s | ÷ no attack | p99 ms | new clients ok | connect p50 ms | connect p99 ms | packets/s at the receiver | XDP drops |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for cell in cells {
        let calm = cells
            .iter()
            .find(|c| c.state == cell.state && c.attack == Attack::None)
            .map_or(f64::NAN, |c| c.keepalive_rps);
        let _ = writeln!(
            text,
            "| {} | {} | {:.0} | {:.2}x | {:.1} | {}/{} | {:.1} | {:.1} | {:.0} | {} |",
            cell.attack.name(),
            cell.state.name(),
            cell.keepalive_rps,
            cell.keepalive_rps / calm,
            cell.keepalive_p99_ms,
            cell.new_ok,
            cell.new_total,
            cell.connect_p50_ms,
            cell.connect_p99_ms,
            cell.flood_pps,
            cell.xdp_drops,
        );
    }
    text
}
