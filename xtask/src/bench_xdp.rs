//! `cargo xtask bench-xdp`: not yet written.

use anyhow::{bail, Result};

/// Options.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the benchmark.
pub fn run(_args: &Args) -> Result<()> {
    bail!("bench-xdp is not implemented yet")
}
