//! `api-shield bans`: the bans in force, with wall-clock expiry.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::{
    control::Request,
    fastpath::{Ban, SystemClock},
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON (an array of bans).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Lists the bans.
pub fn run(args: &Args) -> Result<()> {
    let bans: Vec<Ban> = match args.maps.via_daemon(&Request::Bans)? {
        Some(body) => serde_json::from_value(body)?,
        None => args.maps.open()?.1.bans(&SystemClock)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bans)?);
        return Ok(());
    }
    if bans.is_empty() {
        println!("no bans in force");
        return Ok(());
    }
    println!(
        "{:<43} {:<21} {:>9}  REASON",
        "TARGET", "EXPIRES (UTC)", "LEFT"
    );
    for ban in bans {
        let left = ban.remaining_secs.map_or_else(
            || "-".to_owned(),
            |s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
        );
        println!(
            "{:<43} {:<21} {:>9}  {}",
            ban.target,
            ban.expires.as_deref().unwrap_or("never"),
            left,
            ban.reason
        );
    }
    Ok(())
}
