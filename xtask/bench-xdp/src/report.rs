//! The markdown report: medians per state and per-cycle ratios to nftables with their spread.

use std::fmt::Write as _;

use crate::{measure::Sample, receiver::State};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

/// The report for a run.
pub fn markdown(
    samples: &[Sample],
    generated: u64,
    costs: &[(&str, f64)],
    command: &str,
) -> String {
    let cycles: Vec<u32> = {
        let mut c: Vec<u32> = samples.iter().map(|s| s.cycle).collect();
        c.dedup();
        c
    };
    let of =
        |state: State| -> Vec<&Sample> { samples.iter().filter(|s| s.state == state).collect() };
    let nft_by_cycle = |cycle: u32| {
        samples
            .iter()
            .find(|s| s.cycle == cycle && s.state == State::Nftables)
            .map(|s| s.ns_per_packet)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Command: `{command}` ({} cycles, {generated} frames generated)\n",
        cycles.len()
    );
    let _ = writeln!(
        out,
        "| receiver state | ns/packet (median) | Mpps (median) | nftables ns ÷ this ns (median, min–max over cycles) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for state in [
        State::NoFilter,
        State::Nftables,
        State::Generic,
        State::Driver,
        State::DenyFlood,
        State::DenyFloodLarge,
        State::BareDrop,
    ] {
        let rows = of(state);
        if rows.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = rows
            .iter()
            .filter_map(|s| nft_by_cycle(s.cycle).map(|nft| nft / s.ns_per_packet))
            .collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2} | {:.2}x ({:.2}–{:.2}) |",
            state.name(),
            median(rows.iter().map(|s| s.ns_per_packet).collect()),
            median(rows.iter().map(|s| s.pps / 1e6).collect()),
            median(ratios.clone()),
            lo,
            hi
        );
    }
    let filled: Vec<f64> = of(State::DenyFloodLarge)
        .iter()
        .filter_map(|s| {
            samples
                .iter()
                .find(|d| d.cycle == s.cycle && d.state == State::DenyFlood)
                .map(|d| s.ns_per_packet / d.ns_per_packet)
        })
        .collect();
    if !filled.is_empty() {
        let lo = filled.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = filled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let _ = writeln!(
            out,
            "\nDeny-list drops with the random entries ÷ without them, receiver ns per dropped packet: {:.2}x (median; {lo:.2}–{hi:.2} over cycles)",
            median(filled.clone())
        );
    }
    let _ = writeln!(out, "\nProgram cost per packet through BPF_PROG_TEST_RUN (repeat 2,000,000, harness included):\n");
    let _ = writeln!(out, "| path | ns/packet |");
    let _ = writeln!(out, "|---|---|");
    for (path, ns) in costs {
        let _ = writeln!(out, "| {path} | {ns:.1} |");
    }
    out
}
