//! Receiver CPU time from `/proc/PID/schedstat` and the per-phase figures.

use std::{fmt, time::Instant};

use anyhow::{Context as _, Result};

use crate::receiver::State;

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Nanoseconds the receiver's NAPI kthreads have run.
    pub cpu_ns: u64,
    /// Packets the phase's filter handled (dropped).
    pub packets: u64,
    /// When.
    pub at: Instant,
}

/// One measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Cycle number.
    pub cycle: u32,
    /// What filtered.
    pub state: State,
    /// Receiver CPU nanoseconds per packet.
    pub ns_per_packet: f64,
    /// Packets per second handled.
    pub pps: f64,
}

impl Sample {
    /// The figures between two snapshots.
    pub fn between(cycle: u32, state: State, before: &Snapshot, after: &Snapshot) -> Sample {
        let packets = after.packets.saturating_sub(before.packets).max(1) as f64;
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        Sample {
            cycle,
            state,
            ns_per_packet: after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / packets,
            pps: packets / seconds,
        }
    }
}

impl fmt::Display for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cycle {} {:<20} {:>8.1} ns/packet {:>6.2} Mpps",
            self.cycle,
            self.state.name(),
            self.ns_per_packet,
            self.pps / 1e6
        )
    }
}

/// Total run time of the threads, from the first field of `/proc/PID/schedstat`.
pub fn napi_cpu_ns(pids: &[i32]) -> Result<u64> {
    pids.iter()
        .map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))?;
            text.split_whitespace()
                .next()
                .context("empty schedstat")?
                .parse::<u64>()
                .context("schedstat")
        })
        .sum()
}
