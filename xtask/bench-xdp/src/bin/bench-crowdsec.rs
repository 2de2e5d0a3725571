//! bench-crowdsec: how long a CrowdSec decision takes to drop packets at the NIC. Two network
//! namespaces joined by a veth; in the receiver, a CrowdSec Local API of the benchmark's own
//! (Debian's `crowdsec`, a private config and `SQLite` database, offline) and the release daemon
//! with XDP in driver mode, pulling the LAPI every `--poll-interval-ms` as its bouncer.
//!
//! `--decisions` times, one at a time, each started at a different phase of the poll interval:
//! `cscli decisions add --ip X --duration 10m` is run, then
//! UDP probes are sent from X (`IP_TRANSPARENT`, so no address is needed per source) to a port
//! nothing protects, one per millisecond, until the receiver's count of banned drops moves.
//! The clock runs from before `cscli` starts (its own start and login included, as an operator
//! or an agent's alert would pay them) to that drop: p50, p99 and max against the target of
//! two poll intervals.
//!
//! Run it with `cargo xtask bench-crowdsec` (as root, with `crowdsec` and `cscli` installed as
//! `.ci/run` installs them).

#[path = "../child_guard.rs"]
mod child_guard;
#[path = "../probe.rs"]
mod probe;
// Only its path of the release binary.
#[allow(dead_code)]
#[path = "../shield_cli.rs"]
mod shield_cli;
#[allow(dead_code)]
#[path = "../topology.rs"]
mod topology;

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use api_shield::fastpath::{layout_dir, PinnedMaps};
use api_shield_common::Reason;
use clap::Parser;

use crate::{
    child_guard::Guard,
    probe::{percentile_ms, probe_from},
    topology::Topology,
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-crowdsec")]
struct Args {
    /// Decisions timed, one at a time.
    #[arg(long, default_value_t = 200)]
    decisions: usize,
    /// The bouncer's poll interval (`crowdsec.poll_interval`), milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
}

/// The LAPI's port, on the receiver's loopback.
const LAPI_PORT: u16 = 18081;
/// The receiver's address, where the probes go (UDP port 9: nothing protects it).
const RX_ADDR: Ipv4Addr = Ipv4Addr::new(10, 202, 1, 2);
const PINS: &str = "/sys/fs/bpf/api-shield-bench-crowdsec";

fn cscli(rx_ns: &str, config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", rx_ns, "cscli", "-c"])
        .arg(config)
        .args(args)
        .output()
        .context("running cscli (Debian package crowdsec, unpacked as .ci/run does)")?;
    if !out.status.success() {
        bail!("cscli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the LAPI's config in `dir` and starts it in `rx_ns`; returns once it accepts
/// connections.
fn start_lapi(rx_ns: &str, dir: &Path) -> Result<(Guard, std::path::PathBuf)> {
    let data = dir.join("data");
    std::fs::create_dir_all(dir.join("hub"))?;
    std::fs::create_dir_all(&data)?;
    std::fs::write(dir.join("simulation.yaml"), "simulation: false\n")?;
    std::fs::write(
        dir.join("profiles.yaml"),
        "name: default_ip_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n  - type: ban\n    duration: 4h\non_success: break\n",
    )?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "common:\n  daemonize: false\n  log_media: stdout\n  log_level: warning\n  working_dir: .\n\
             config_paths:\n  config_dir: {d}/\n  data_dir: {data}/\n  simulation_path: {d}/simulation.yaml\n  hub_dir: {d}/hub/\n  index_path: {d}/hub/.index.json\n\
             db_config:\n  type: sqlite\n  db_path: {data}/crowdsec.db\n  log_level: warning\n\
             api:\n  client:\n    credentials_path: {d}/local_api_credentials.yaml\n  server:\n    log_level: warning\n    listen_uri: 127.0.0.1:{LAPI_PORT}\n    profiles_path: {d}/profiles.yaml\n    trusted_ips: [127.0.0.1]\n\
             prometheus:\n  enabled: false\n",
            d = dir.display(),
            data = data.display(),
        ),
    )?;
    let credentials = dir.join("local_api_credentials.yaml").display().to_string();
    cscli(
        rx_ns,
        &config,
        &[
            "machines",
            "add",
            "local",
            "-a",
            "-f",
            &credentials,
            "--force",
        ],
    )?;
    let lapi = Guard(
        Command::new("ip")
            .args(["netns", "exec", rx_ns, "crowdsec", "-c"])
            .arg(&config)
            .arg("-no-cs")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting crowdsec")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !in_netns(rx_ns, || {
        std::net::TcpStream::connect(("127.0.0.1", LAPI_PORT)).is_ok()
    })? {
        if Instant::now() > deadline {
            bail!("the CrowdSec LAPI never answered");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((lapi, config))
}

/// Runs `f` on a thread inside `netns`.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let path = format!("/run/netns/{netns}");
    let file = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("entering the namespace");
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))
}

/// Starts the daemon in `rx_ns` as the LAPI's bouncer; returns once its first pull is done.
fn start_daemon(topology: &Topology, dir: &Path, key: &Path, poll_ms: u64) -> Result<Guard> {
    let config = dir.join("api-shield.toml");
    std::fs::write(
        &config,
        format!(
            "[fastpath]\ninterfaces = [\"{interface}\"]\nmode = \"driver\"\npin_dir = \"{PINS}\"\nruntime_dir = \"{run}\"\n\n\
             [access_log]\nsink = \"off\"\n\n\
             [crowdsec]\nlapi_url = \"http://127.0.0.1:{LAPI_PORT}\"\napi_key_file = \"{key}\"\npoll_interval = \"{poll_ms}ms\"\n",
            interface = topology.rx_if,
            run = dir.join("run").display(),
            key = key.display(),
        ),
    )?;
    let log_path = dir.join("daemon.log");
    let log = std::fs::File::create(&log_path)?;
    // nsenter, not `ip netns exec`: that one also gives the process a mount namespace of its
    // own, where the maps it pins would be out of the benchmark's sight.
    let daemon = Guard(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", topology.rx_ns))
            .arg(shield_cli::binary())
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the daemon")?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path)?.contains("crowdsec: decisions pulled") {
        if Instant::now() > deadline {
            bail!(
                "the daemon never pulled the LAPI:\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(daemon)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-crowdsec needs root (network namespaces, XDP)");
    }
    let dir = tempfile::tempdir()?;
    let topology = Topology::new()?;
    let (_lapi, lapi_config) = start_lapi(&topology.rx_ns, &dir.path().join("lapi"))?;
    let key = dir.path().join("bouncer.key");
    std::fs::write(
        &key,
        cscli(
            &topology.rx_ns,
            &lapi_config,
            &["bouncers", "add", "api-shield", "-o", "raw"],
        )?
        .trim(),
    )?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let daemon = start_daemon(&topology, dir.path(), &key, args.poll_interval_ms)?;
    let maps = PinnedMaps::open(&layout_dir(Path::new(PINS)))?;
    let target = SocketAddr::from((RX_ADDR, 9));
    let mut times = Vec::with_capacity(args.decisions);
    for i in 0..args.decisions {
        let source = Ipv4Addr::new(10, 203, (i / 250) as u8, (i % 250 + 1) as u8);
        let probe = in_netns(&topology.tx_ns, move || probe_from(source))??;
        // Each decision starts where the last one's drop was seen, just after a pull: waiting
        // a share of the interval first spreads them over its phases (0 %, 61 %, 22 %, ...),
        // as decisions made at any moment are.
        let share = (i * 61 % 100) as u64;
        std::thread::sleep(Duration::from_millis(args.poll_interval_ms * share / 100));
        let before = maps.stats()?.packets(Reason::DropBanned);
        let started = Instant::now();
        cscli(
            &topology.rx_ns,
            &lapi_config,
            &[
                "decisions",
                "add",
                "--ip",
                &source.to_string(),
                "--duration",
                "10m",
            ],
        )?;
        loop {
            probe.send_to(b"api-shield bench-crowdsec probe", target)?;
            if maps.stats()?.packets(Reason::DropBanned) > before {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("no packet from {source} was dropped 30 s after its decision");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        times.push(started.elapsed());
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(PINS);
    times.sort();
    let (p50, p99, max) = (
        percentile_ms(&times, 0.5),
        percentile_ms(&times, 0.99),
        percentile_ms(&times, 1.0),
    );
    let mut report = String::from("# bench-crowdsec\n\n");
    writeln!(
        report,
        "CrowdSec decision to the first dropped packet (`cscli decisions add` to a probe dropped at the NIC), {} decisions, poll interval {} ms: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (target: p99 under two poll intervals, {} ms)",
        times.len(),
        args.poll_interval_ms,
        2 * args.poll_interval_ms
    )?;
    print!("{report}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-crowdsec.md");
    std::fs::write(&path, &report)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}
