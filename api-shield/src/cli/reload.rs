//! `api-shield reload`: the running daemon reads its config again; a bad config is refused,
//! the running one stays, and the error (file, line, key) is printed.

use anyhow::Result;

use super::control_args::ControlArgs;
use crate::control::{client::ask, Request};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Asks for the reload.
pub fn run(args: &Args) -> Result<()> {
    ask(&args.control.socket()?, &Request::Reload)?;
    println!("config reloaded");
    Ok(())
}
