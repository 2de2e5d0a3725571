//! bench-xdp: the same bounded, in-kernel-generated flood (252 sources) against
//! (a) no filter, (b) an nftables netdev-ingress drop rule, (c) api-shield in generic mode,
//! (d) in driver mode and (e) a minimal drop-by-source XDP program on an LRU hash (the yardstick), interleaved in
//! one run, measuring receiver CPU time per packet from the
//! threaded NAPI kthread of the receiving veth (see docs/benchmarking.md).
//!
//! Run it with `cargo xtask bench-xdp` (as root).

// The packet-socket generator is bench-flood's: the receiver's CPU per drop is measured on XDP
// frames from the in-kernel generator only.
#[allow(dead_code)]
mod generator;
mod measure;
mod micro;
mod nets;
mod receiver;
mod report;
mod topology;

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::{bail, Result};
use clap::Parser;

use crate::{
    measure::Sample,
    receiver::{Receiver, State},
    topology::Topology,
};

/// Options.
#[derive(Parser, Debug)]
#[command(name = "bench-xdp")]
struct Args {
    /// Cycles through the four states.
    #[arg(long, default_value_t = 8)]
    cycles: u32,
    /// Seconds measured per state per cycle.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Seconds to settle after each state change.
    #[arg(long, default_value_t = 0.5)]
    settle: f64,
    /// CPU the sender (the generator thread) runs on; the receiver's NAPI kthread is on CPU1.
    #[arg(long, default_value_t = 0)]
    sender_cpu: usize,
    /// Two more states: the flood's sources in api-shield's deny table, alone and with this many
    /// random /32s beside them, measured against each other in the same cycles (0: neither).
    /// The table is written before each of them and emptied after.
    #[arg(long, default_value_t = 0)]
    deny_entries: usize,
    /// Only measure the program cost per decision path, then exit.
    #[arg(long)]
    micro_only: bool,
    /// Markdown report written here too.
    #[arg(long, default_value = "target/bench-xdp.md")]
    output: std::path::PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("bench-xdp needs root (network namespaces, XDP, nftables)");
    }
    if nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)?.unwrap_or(1) < 2 {
        bail!("bench-xdp needs two CPUs: the sender on CPU0, the receiver on CPU1");
    }
    let topology = Topology::new()?;
    let mut receiver = Receiver::new(&topology, args.deny_entries)?;
    let (tx_mac, rx_mac) = (topology.tx_mac, topology.rx_mac);
    let costs = receiver.program_costs(|src| generator::udp_frame(tx_mac, rx_mac, src))?;
    for (path, ns) in &costs {
        eprintln!("program cost: {path}: {ns:.1} ns");
    }
    if args.micro_only {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut states = vec![
        State::Driver,
        State::BareDrop,
        State::Nftables,
        State::Generic,
        State::NoFilter,
    ];
    if args.deny_entries > 0 {
        states.insert(1, State::DenyFlood);
        states.insert(2, State::DenyFloodLarge);
    }
    // Filling and emptying the deny table takes about a second per million entries, twice a
    // cycle, before each state's settle time.
    let per_cycle =
        states.len() as f64 * (args.seconds + args.settle) + 2.5 * args.deny_entries as f64 / 1e6;
    let total = Duration::from_secs_f64(f64::from(args.cycles) * per_cycle + 10.0);
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let generator = generator::start(
        &topology,
        args.sender_cpu,
        Arc::clone(&stop),
        Arc::clone(&sent),
        total,
    );
    let mut samples: Vec<Sample> = Vec::new();
    for cycle in 0..args.cycles {
        // Each cycle starts one state later, so over a multiple of five cycles each state is
        // measured first in a cycle, right after the previous cycle's last state, once. The
        // order within a cycle stays the same (a rotation keeps it), so each state still
        // follows the same state inside a cycle.
        if cycle > 0 {
            states.rotate_left(1);
        }
        for &state in &states {
            receiver.enter(state)?;
            std::thread::sleep(Duration::from_secs_f64(args.settle));
            let before = receiver.snapshot(state)?;
            let sent_before = sent.load(std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs_f64(args.seconds));
            let after = receiver.snapshot(state)?;
            let sent_after = sent.load(std::sync::atomic::Ordering::Relaxed);
            let sample = Sample::between(cycle, state, &before, &after);
            eprintln!(
                "{sample} (sender {:.2} Mpps)",
                (sent_after - sent_before) as f64 / args.seconds / 1e6
            );
            samples.push(sample);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let generated = generator
        .join()
        .map_err(|_| anyhow::anyhow!("generator panicked"))??;
    receiver.enter(State::NoFilter)?;
    let text = report::markdown(&samples, generated, &costs, &args_line(&args));
    println!("{text}");
    if let Some(dir) = args.output.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.output, &text)?;
    eprintln!("report written to {}", args.output.display());
    Ok(())
}

fn args_line(args: &Args) -> String {
    format!(
        "cargo xtask bench-xdp -- --cycles {} --seconds {} --settle {} --sender-cpu {}{}",
        args.cycles,
        args.seconds,
        args.settle,
        args.sender_cpu,
        if args.deny_entries > 0 {
            format!(" --deny-entries {}", args.deny_entries)
        } else {
            String::new()
        }
    )
}
