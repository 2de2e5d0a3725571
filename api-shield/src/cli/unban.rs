//! `api-shield unban ADDR|CIDR`: lifts the ban of exactly that address or network.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::{
    control::{client::ControlError, Answer, Request},
    fastpath,
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Address or network, as given to `ban`.
    pub target: String,
    /// On this host only: a daemon in a fleet leaves the other hosts' ban in place.
    #[arg(long)]
    pub local: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Lifts the ban.
pub(super) fn run(args: &Args) -> Result<()> {
    let target = fastpath::parse_target(&args.target)?;
    let request = Request::Unban {
        target: target.to_string(),
        local: args.local,
    };
    match args.maps.via_daemon(&request)? {
        Some(Answer::Unbanned { .. }) => {}
        Some(_) => return Err(ControlError::Unexpected("unban").into()),
        None => args.maps.open()?.1.unban(&target)?,
    }
    println!("unbanned {target}");
    Ok(())
}
