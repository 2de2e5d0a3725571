//! `api-shield detach [IF...]`: takes the XDP program off interfaces while no daemon runs (after
//! a stop with `fastpath.keep_attached = true`, or a crash), keeping bans and counters pinned.
//! The kernel refuses `ip link set dev IF xdp off` for a program held by a BPF link, so this is
//! the way to switch the fast path off by hand.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::fastpath;

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Interfaces to detach from [default: every interface api-shield is attached to].
    pub interfaces: Vec<String>,
    /// Print what was detached as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Detaches.
pub(super) fn run(args: &Args) -> Result<()> {
    let config = args.maps.fastpath()?;
    let removed = fastpath::detach(&config.pin_dir, &config.runtime_dir, &args.interfaces)?;
    if args.json {
        println!("{}", serde_json::to_string(&removed)?);
        return Ok(());
    }
    if removed.detached.is_empty() {
        println!(
            "not attached anywhere (nothing pinned under {})",
            config.pin_dir.display()
        );
    }
    for interface in &removed.detached {
        println!("detached from {interface} (bans and counters stay pinned)");
    }
    Ok(())
}
