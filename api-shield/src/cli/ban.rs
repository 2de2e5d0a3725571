//! `api-shield ban ADDR|CIDR --ttl 15m --reason TEXT`: writes a ban into the kernel map,
//! whether or not the daemon runs (the maps are created and pinned if they are not yet).

use std::time::Duration;

use anyhow::{bail, Result};

use super::maps_args::MapsArgs;
use crate::{
    control::{client::ControlError, Answer, Request},
    fastpath::{self, layout_dir, BanRequest, GuardedBan, PinnedMaps, SystemClock},
};

/// Arguments.
#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)] // Each is a command-line flag.
pub(super) struct Args {
    /// Address or network, e.g. `203.0.113.7` or `2001:db8::/48`.
    pub target: String,
    /// How long, e.g. 90s, 15m, 2h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_ttl, conflicts_with = "permanent")]
    pub ttl: Duration,
    /// Ban until unbanned.
    #[arg(long)]
    pub permanent: bool,
    /// Why (kept up to 48 bytes).
    #[arg(long, default_value = "manual")]
    pub reason: String,
    /// Ban a network broader than `fastpath.guard` allows (default /8 for IPv4, /16 for
    /// IPv6). `::/0` and `0.0.0.0/0` cut the whole host off, SSH included.
    #[arg(long)]
    pub force: bool,
    /// On this host only: a daemon in a fleet does not share it.
    #[arg(long)]
    pub local: bool,
    /// Print the ban as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); use e.g. 15m"))?;
    if ttl.is_zero() {
        return Err("the TTL must be more than zero (or use --permanent)".to_owned());
    }
    Ok(ttl)
}

/// Makes the ban.
pub(super) fn run(args: &Args) -> Result<()> {
    let target = fastpath::parse_target(&args.target)?;
    if args.reason.trim().is_empty() {
        bail!("--reason must not be empty");
    }
    if args.reason.chars().any(char::is_control) {
        bail!("--reason must be printable text");
    }
    let ttl = (!args.permanent).then_some(args.ttl);
    match args.maps.via_daemon(&Request::Ban {
        target: target.to_string(),
        ttl_secs: ttl.map(|t| t.as_secs().max(1)),
        reason: args.reason.clone(),
        force: args.force,
        local: args.local,
    })? {
        Some(Answer::Banned(made)) => return print(&made, args.json),
        Some(_) => return Err(ControlError::Unexpected("ban").into()),
        None => {}
    }
    let config = args.maps.fastpath()?;
    let dir = layout_dir(&config.pin_dir);
    let mut maps = match PinnedMaps::open(&dir) {
        Ok(maps) => maps,
        Err(fastpath::FastpathError::NotPinned { .. }) => {
            // Load the program once, without attaching it, to create and pin its maps.
            drop(fastpath::load_program(&dir, &config)?);
            PinnedMaps::open(&dir)?
        }
        Err(error) => return Err(error.into()),
    };
    let made = maps.ban_guarded(
        &BanRequest {
            target,
            ttl,
            reason: args.reason.clone(),
            origin: None,
        },
        &config.guard,
        &config.allow,
        args.force,
        &SystemClock,
    )?;
    print(&made, args.json)
}

fn print(made: &GuardedBan, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(made)?);
        return Ok(());
    }
    let ban = &made.ban;
    println!(
        "banned {} until {} ({})",
        ban.target,
        ban.expires.as_deref().unwrap_or("unbanned"),
        ban.reason
    );
    for allowed in &made.still_allowed {
        println!("note: {allowed} lies inside it and stays allowed (fastpath.allow)");
    }
    Ok(())
}
