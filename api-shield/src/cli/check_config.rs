//! `api-shield check-config FILE`: parse and validate, say what is wrong and where.

use std::path::PathBuf;

use anyhow::Result;

use crate::config;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    pub file: PathBuf,
}

/// Checks the file; a bad one is an error that `cli::main` turns into exit status 64.
pub fn run(args: &Args) -> Result<()> {
    let config = config::load(&args.file)?;
    // Compiling the proxy reads what the config points at (keys, schemas, OpenAPI documents).
    crate::proxy::handler::Proxy::new(&config, crate::policy::clock::system())?;
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
    Ok(())
}
