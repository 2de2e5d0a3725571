//! `api-shield reload`: the running daemon reads its config again; a bad config is refused,
//! the running one stays, and the error (file, line, key) is printed.

use anyhow::Result;

use super::control_args::ControlArgs;
use crate::control::{client::ControlError, Answer, Request};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Asks for the reload.
pub(super) fn run(args: &Args) -> Result<()> {
    let Answer::Reloaded(reloaded) = args.control.ask(&Request::Reload)? else {
        return Err(ControlError::Unexpected("reload").into());
    };
    println!("config reloaded");
    print_pending(&reloaded.pending_restart);
    Ok(())
}

/// Names the settings that wait for a restart, if there are any.
pub(super) fn print_pending(pending: &[String]) {
    if !pending.is_empty() {
        println!(
            "pending restart: {} (changed, but read only at start: restart to apply)",
            pending.join(", ")
        );
    }
}
