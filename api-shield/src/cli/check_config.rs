//! `api-shield check-config FILE`: parse and validate, say what is wrong and where.

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    config,
    control::{Answer, Request},
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The config file.
    pub file: PathBuf,
}

/// Checks the file; a bad one is an error that `cli::main` turns into exit status 64. With a
/// daemon running on this config's control socket, also names the changed settings that a
/// reload would leave for the next restart.
pub(super) fn run(args: &Args) -> Result<()> {
    let config = config::load(&args.file)?;
    // What the host must have (the interfaces), as a start or a reload would require.
    config::check_host(&config)?;
    // Compiling the proxy reads what the config points at (keys, schemas, OpenAPI documents).
    crate::proxy::request::handler::Proxy::new(&config, crate::policy::clock::system())?;
    println!(
        "{}: ok (fast path {} on {})",
        args.file.display(),
        if config.fastpath.enabled {
            "enabled"
        } else {
            "disabled"
        },
        config.fastpath.interfaces.join(", ")
    );
    if config.control.disabled {
        return Ok(());
    }
    let file = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
    let request = Request::PendingRestart { config: file };
    // No daemon, or not one this user may ask: nothing to compare with.
    if let Ok(Answer::PendingRestart(pending)) =
        super::control_args::ask_first(&super::control_args::candidates(&config), &request)
    {
        super::reload::print_pending(&pending.pending_restart);
    }
    Ok(())
}
