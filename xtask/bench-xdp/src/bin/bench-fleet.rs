//! bench-fleet: fleet mode measured on this machine. Three hosts (network namespaces, the
//! release daemon with XDP in driver mode on each host's veth) share one Redis of the
//! benchmark's own, reached from a client namespace.
//!
//! - **Ban propagation**: `--bans` bans made one at a time through host 0's control socket, each
//!   timed from the request until host 1's XDP program drops a packet from the banned source
//!   (probes sent from it until host 1's banned-drop counter moves): p50, p99 and max.
//! - **Fleet rate limit cost**: wrk against host 0 on a `scope = "fleet"` route and on the same
//!   route scoped to the host (limits too high to refuse), alternating, `--rounds` of
//!   `--seconds` each; the ratio of medians.
//! - **Accuracy**: a wrk on every host against one fleet-scoped route (100 per second, burst
//!   100, one client key) for `--accuracy-seconds`; requests admitted across the fleet against
//!   the burst plus the rate over the run.
//! - **Memory** after the propagation run: Redis's `used_memory` and each daemon's RSS; then
//!   `--memory-keys` requests to host 0, each with a new client key of a fleet-scoped route:
//!   the keys Redis holds, its memory for them, and host 0's RSS before and after (measured
//!   before the resync, whose freed memory the allocator would hand back to the keys); then
//!   `--memory-bans` bans written into Redis, every host made to resync, timed until host 1's
//!   kernel map holds them, and the memory again.
//!
//! Run it with `cargo xtask bench-fleet` (as root: it installs redis-server and wrk if missing).

#[path = "../child_guard.rs"]
mod child_guard;
#[path = "bench-fleet/fleet.rs"]
mod fleet;
#[path = "bench-fleet/measure.rs"]
mod measure;
#[path = "../probe.rs"]
mod probe;
// Only its certificate.
#[allow(dead_code)]
#[path = "../proxy_peers.rs"]
mod proxy_peers;
// Only its path of the release binary.
#[allow(dead_code)]
#[path = "../shield_cli.rs"]
mod shield_cli;

use std::fmt::Write as _;

use anyhow::Result;
use clap::Parser;

use crate::{fleet::Fleet, probe::percentile_ms, proxy_peers::middle};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-fleet")]
struct Args {
    /// Bans timed from host 0 to host 1.
    #[arg(long, default_value_t = 1000)]
    bans: usize,
    /// Rounds of the throughput comparison.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds per throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Seconds of the accuracy run.
    #[arg(long, default_value_t = 60)]
    accuracy_seconds: u32,
    /// Fleet bans written into Redis for the resync and memory run.
    #[arg(long, default_value_t = 100_000)]
    memory_bans: usize,
    /// Client keys of a fleet-scoped limit made through host 0 for the memory figures.
    #[arg(long, default_value_t = 1_000_000)]
    memory_keys: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("bench-fleet needs root (network namespaces, XDP)");
    }
    let fleet = Fleet::start(3, measure::ROUTES)?;
    let mut report = String::from("# bench-fleet\n\n");

    let mut times = measure::propagation(&fleet, args.bans)?;
    times.sort();
    let (p50, p99, max) = (
        percentile_ms(&times, 0.5),
        percentile_ms(&times, 0.99),
        percentile_ms(&times, 1.0),
    );
    writeln!(
        report,
        "Ban propagation, host 0's control socket to the first packet dropped at host 1, {} bans: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms (target: p99 under 100 ms)\n",
        times.len()
    )?;
    let redis = fleet.redis_memory()?;
    let rss = fleet.daemons_rss()?;
    writeln!(
        report,
        "Memory with {} fleet bans: Redis used_memory {:.1} MiB; daemon RSS {}\n",
        times.len(),
        redis as f64 / 1_048_576.0,
        rss.join(", ")
    )?;

    let pairs = measure::throughput(&fleet, args.rounds, args.seconds)?;
    let mut fleet_rps: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let mut host_rps: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    fleet_rps.sort_by(f64::total_cmp);
    host_rps.sort_by(f64::total_cmp);
    let (f, h) = (middle(&fleet_rps), middle(&host_rps));
    writeln!(
        report,
        "Rate-limited route on host 0, medians of {} alternating rounds of {} s (wrk -t1 -c20): scope fleet {f:.0} req/s, scope host {h:.0} req/s: **{:.3}x** (target: at least 0.9x)\n",
        args.rounds,
        args.seconds,
        f / h
    )?;
    for (i, (f, h)) in pairs.iter().enumerate() {
        writeln!(report, "- round {}: {f:.0} / {h:.0} = {:.3}x", i + 1, f / h)?;
    }

    let (admitted, sent) = measure::accuracy(&fleet, args.accuracy_seconds)?;
    let budget = measure::ACC_BURST + measure::ACC_RATE * f64::from(args.accuracy_seconds);
    writeln!(
        report,
        "\nAccuracy, one client key on all three hosts for {} s (a wrk -c2 on each), limit 100 per second with a burst of 100: {admitted} admitted of {sent} sent, budget {budget:.0}: **{:.3}x** (target: within 10 %)",
        args.accuracy_seconds,
        admitted as f64 / budget
    )?;

    let keys = measure::limit_keys(&fleet, args.memory_keys)?;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    writeln!(
        report,
        "\nFleet-scoped limit keys: {} requests to host 0, each with a new client key ({} admitted); Redis holds {} more keys in {:.1} MiB more ({:.0} bytes per key); host 0's RSS {:.1} MiB before, {:.1} MiB after ({:.0} bytes per key)",
        keys.requests,
        keys.admitted,
        keys.redis_keys,
        mib(keys.redis_bytes),
        keys.redis_bytes as f64 / keys.redis_keys as f64,
        mib(keys.rss_before),
        mib(keys.rss_after),
        keys.rss_after.saturating_sub(keys.rss_before) as f64 / keys.admitted as f64
    )?;
    let before = fleet.redis_memory()?;
    let took = measure::resync(&fleet, args.memory_bans)?;
    let redis = fleet.redis_memory()?;
    let rss = fleet.daemons_rss()?;
    writeln!(
        report,
        "\nResync of {} more fleet bans written into Redis (every host reconnects and reads them all): host 1's kernel map holds them {:.2} s after the subscriptions were closed. Then: Redis used_memory {:.1} MiB in all, {:.1} MiB more for the bans ({:.0} bytes per ban); daemon RSS {}",
        args.memory_bans,
        took.as_secs_f64(),
        mib(redis),
        mib(redis.saturating_sub(before)),
        redis.saturating_sub(before) as f64 / args.memory_bans as f64,
        rss.join(", ")
    )?;
    drop(fleet);
    print!("{report}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-fleet.md");
    std::fs::write(&path, &report)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}
