//! soak: the release daemon (fast path attached to `lo` in generic mode, TLS listener, JWT,
//! API-key, rate-limit and schema routes, escalation with short bans) in front of the demo API,
//! under bounded mixed traffic on loopback only: legitimate HTTP/1.1 and HTTP/2 keep-alive
//! clients from 127.0.0.1 and hostile clients from 127.0.1-7.x (bad credentials, invalid
//! bodies, bursts past the rate limit, slowloris, abandoned and reset connections). Every
//! interval it records the daemon's RSS, open file descriptors, kernel map sizes and error
//! counters, then judges whether they stayed flat (see `soak/verdict.rs` for the rules) and
//! exits non-zero when they did not. Report: stdout and `target/soak.md`; the daemon's log:
//! `target/soak-daemon.log`.
//!
//! Run it with `cargo xtask soak` (as root), e.g. `cargo xtask soak -- --seconds 120`.

#[path = "soak/client.rs"]
mod client;
#[path = "soak/config.rs"]
mod config;
#[path = "soak/counts.rs"]
mod counts;
#[path = "soak/hostile.rs"]
mod hostile;
#[path = "soak/legit.rs"]
mod legit;
#[path = "soak/sample.rs"]
mod sample;
#[path = "../shield_cli.rs"]
mod shield_cli;
#[path = "soak/stack.rs"]
mod stack;
#[path = "soak/verdict.rs"]
mod verdict;

use std::{
    path::PathBuf,
    sync::{atomic::AtomicBool, atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Result};
use clap::Parser;
use tokio::time::Instant;

use crate::{
    client::{Target, Version},
    config::LIMITS,
    counts::Counts,
    hostile::Hostile,
    sample::{Phase, Sample},
    stack::Stack,
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// Seconds of mixed traffic (the first third is the warm-up).
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seconds between the end of the hostile traffic and the last sample (abandoned
    /// connections closed, bans expired and swept).
    #[arg(long, default_value_t = 15)]
    cooldown: u64,
    /// Legitimate requests per second (HTTP/1.1 and HTTP/2 clients together).
    #[arg(long, default_value_t = 40.0)]
    legit_rps: f64,
    /// Hostile actions (connections or requests) per second started, all kinds together.
    #[arg(long, default_value_t = 40.0)]
    hostile_rps: f64,
    /// Markdown report written here too (the daemon's log goes beside it, `soak-daemon.log`).
    #[arg(long, default_value = "target/soak.md")]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.interval == 0 || args.seconds < 3 * args.interval {
        bail!("--seconds must be at least three --interval (the first third is the warm-up)");
    }
    let min_cooldown = LIMITS.ban_ttl.max(LIMITS.idle_timeout).as_secs() + 6;
    if args.cooldown < min_cooldown {
        bail!(
            "--cooldown must be at least {min_cooldown} s \
             (the ban TTL or the idle timeout, plus the 5 s ban sweep)"
        );
    }
    let log_path = args.output.with_file_name("soak-daemon.log");
    let mut stack = Stack::start(&log_path)?;
    eprintln!(
        "soak: daemon {} ready (HTTPS {}, admin {}, maps pinned in {}); {} s of traffic, \
         a sample every {} s, {} s cool-down",
        stack.daemon_pid().unwrap_or(0),
        stack.https,
        stack.admin,
        stack.pin_dir().display(),
        args.seconds,
        args.interval,
        args.cooldown
    );
    let counts = Arc::new(Counts::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let samples = runtime.block_on(async {
        tokio::select! {
            samples = scenario(&args, &stack, &counts) => samples,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    let clients = counts.snapshot();
    let shutdown = stack.stop()?;
    // Abandoned connections still held, if any, go with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let samples = samples?;
    let failures = counts
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let context = verdict::Context {
        command: format!(
            "cargo xtask soak -- --seconds {} --interval {} --cooldown {} --legit-rps {} \
             --hostile-rps {}",
            args.seconds, args.interval, args.cooldown, args.legit_rps, args.hostile_rps
        ),
        traffic: format!(
            "Daemon: release build, 1 worker thread, fast path on lo (generic), maps pinned \
             under a temp dir. Legitimate: {} req/s from 127.0.0.1 over one HTTP/1.1 and one \
             HTTP/2 keep-alive connection (JWT GET, API-key GET, JSON POST). Hostile: {} \
             actions/s from {} addresses 127.0.1-7.1-16 (bad tokens, bad API keys, invalid \
             bodies, bursts past the rate limit, slowloris, abandoned and reset connections). \
             Counters are cumulative.",
            args.legit_rps,
            args.hostile_rps,
            hostile::KINDS.len() * 16,
        ),
        limits: LIMITS,
        shutdown: &shutdown,
        log_levels: (
            stack.log.errors.load(Ordering::Relaxed),
            stack.log.warnings.load(Ordering::Relaxed),
        ),
        failures,
        clients,
    };
    let report = verdict::report(&samples, &context);
    drop(stack);
    println!("\n{}", report.text);
    if let Some(parent) = args.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.output, &report.text)?;
    eprintln!(
        "soak: report in {}, daemon log in {}",
        args.output.display(),
        log_path.display()
    );
    if !report.pass {
        bail!("soak verdict: FAIL");
    }
    Ok(())
}

/// The traffic and the samples: baseline, traffic with samples every interval, hostile traffic
/// stopped, cool-down sample, legitimate traffic stopped.
async fn scenario(args: &Args, stack: &Stack, counts: &Arc<Counts>) -> Result<Vec<Sample>> {
    let target = Target::new(stack.https, &stack.ca)?;
    let stop_legit = Arc::new(AtomicBool::new(false));
    let stop_hostile = Arc::new(AtomicBool::new(false));
    let mut samples = Vec::new();
    let take = |t: u64, phase: Phase| {
        sample::take(stack.admin, &stack.layout, t, phase, counts.snapshot())
    };
    println!("{}", verdict::header());
    let baseline = take(0, Phase::Baseline).await?;
    println!("{}", verdict::row(&baseline));
    samples.push(baseline);

    let start = Instant::now();
    let mut legit = tokio::task::JoinSet::new();
    for version in [Version::H1, Version::H2] {
        legit.spawn(legit::run(
            target.clone(),
            version,
            args.legit_rps / 2.0,
            stack.credentials.clone(),
            Arc::clone(counts),
            Arc::clone(&stop_legit),
        ));
    }
    let hostile = tokio::spawn(hostile::run(
        Arc::new(Hostile {
            target,
            credentials: stack.credentials.clone(),
            counts: Arc::clone(counts),
            stop: Arc::clone(&stop_hostile),
        }),
        args.hostile_rps,
    ));

    let warm_up = args.seconds / 3;
    let mut t = 0;
    while t < args.seconds {
        t = (t + args.interval).min(args.seconds);
        tokio::time::sleep_until(start + Duration::from_secs(t)).await;
        let phase = if t <= warm_up {
            Phase::WarmUp
        } else {
            Phase::Steady
        };
        let sample = take(t, phase).await?;
        println!("{}", verdict::row(&sample));
        samples.push(sample);
    }
    stop_hostile.store(true, Ordering::Relaxed);
    let end = args.seconds + args.cooldown;
    tokio::time::sleep_until(start + Duration::from_secs(end)).await;
    let last = take(end, Phase::CoolDown).await?;
    println!("{}", verdict::row(&last));
    samples.push(last);
    stop_legit.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while legit.join_next().await.is_some() {}
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), hostile).await;
    Ok(samples)
}
