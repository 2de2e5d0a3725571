//! `api-shield reload`: the running daemon reads its config again; a bad config is refused,
//! the running one stays, and the error (file, line, key) is printed.

use anyhow::Result;

use super::control_args::ControlArgs;
use crate::control::Request;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Asks for the reload.
pub fn run(args: &Args) -> Result<()> {
    let answer = args.control.ask(&Request::Reload)?;
    println!("config reloaded");
    print_pending(&answer);
    Ok(())
}

/// Names the settings that wait for a restart, if the answer lists any.
pub fn print_pending(answer: &serde_json::Value) {
    let pending: Vec<&str> = answer["pending_restart"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .collect();
    if !pending.is_empty() {
        println!(
            "pending restart: {} (changed, but read only at start: restart to apply)",
            pending.join(", ")
        );
    }
}
