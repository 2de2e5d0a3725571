//! `api-shield uninstall-maps`: detaches the program everywhere and removes every map and link
//! api-shield pinned (bans and counters included), for an uninstall or a clean slate after a
//! map-size change. Refused while a daemon owns the pin directory.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::fastpath;

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Print what was removed as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Removes.
pub(super) fn run(args: &Args) -> Result<()> {
    let config = args.maps.fastpath()?;
    let removed = fastpath::uninstall_maps(&config.pin_dir, &config.runtime_dir)?;
    if args.json {
        println!("{}", serde_json::to_string(&removed)?);
        return Ok(());
    }
    for interface in &removed.detached {
        println!("detached from {interface}");
    }
    for dir in &removed.removed_dirs {
        println!("removed {} (maps, bans, counters, links)", dir.display());
    }
    if removed.detached.is_empty() && removed.removed_dirs.is_empty() {
        println!("nothing pinned under {}", config.pin_dir.display());
    }
    Ok(())
}
