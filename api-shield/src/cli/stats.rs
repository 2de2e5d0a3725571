//! `api-shield stats`: counters per action and reason, and where the program is attached.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::{
    control::{client::ControlError, protocol::StatsReport, Answer, Request},
    fastpath::{RuntimeStatus, SystemClock},
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Prints the counters.
pub(super) fn run(args: &Args) -> Result<()> {
    let report = match args.maps.via_daemon(&Request::Stats)? {
        Some(Answer::Stats(report)) => report,
        Some(_) => return Err(ControlError::Unexpected("stats").into()),
        None => from_maps(args)?,
    };
    print(&report, args.json)
}

fn from_maps(args: &Args) -> Result<StatsReport> {
    let (config, maps) = args.maps.open()?;
    let status = RuntimeStatus::read(&config.runtime_dir);
    Ok(StatsReport {
        daemon_running: status.as_ref().is_some_and(RuntimeStatus::daemon_running),
        interfaces: status
            .as_ref()
            .map(|s| s.still_attached(&config.pin_dir))
            .unwrap_or_default(),
        dry_run: status.as_ref().is_some_and(|s| s.dry_run),
        active_bans: maps.bans(&SystemClock)?.len(),
        counters: maps.stats()?.counters,
        lists: maps.list_stats()?,
    })
}

fn print(report: &StatsReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "daemon: {}{}",
        if report.daemon_running {
            "running"
        } else {
            "not running"
        },
        if report.dry_run {
            " (dry run: nothing is dropped)"
        } else {
            ""
        }
    );
    if report.interfaces.is_empty() {
        println!("attached: nowhere");
    }
    for interface in &report.interfaces {
        println!("attached: {} ({} mode)", interface.name, interface.mode);
    }
    println!("active bans: {}\n", report.active_bans);
    println!(
        "{:<8} {:<22} {:>14} {:>16}",
        "ACTION", "REASON", "PACKETS", "BYTES"
    );
    for row in &report.counters {
        println!(
            "{:<8} {:<22} {:>14} {:>16}",
            row.action, row.reason, row.packets, row.bytes
        );
    }
    if report
        .lists
        .iter()
        .any(|l| l.list != crate::fastpath::CONFIG_DENY_NAME)
    {
        println!("\n{:<31} {:>14} {:>16}", "DENY LIST", "PACKETS", "BYTES");
        for row in &report.lists {
            println!("{:<31} {:>14} {:>16}", row.list, row.packets, row.bytes);
        }
    }
    Ok(())
}
