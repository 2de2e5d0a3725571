//! `cargo xtask bench-xdp`: installs nftables and ethtool if missing, then runs the benchmark
//! binary (`xtask/bench-xdp`) in release mode. Its report goes to stdout and
//! `target/bench-xdp.md`; BENCHMARKS.md records the figures.

use anyhow::Result;

use crate::{cmd, setup};

/// Arguments passed through to the benchmark binary.
#[derive(clap::Args)]
pub struct Args {
    /// e.g. `-- --cycles 8 --seconds 2 --settle 0.5`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the proxy benchmark (installs nginx and wrk if missing).
pub fn run_proxy(args: &Args) -> Result<()> {
    setup::packages(&[("nginx", "nginx"), ("wrk", "wrk")])?;
    let mut full = vec!["--".to_owned()];
    full.extend(args.args.iter().cloned());
    cmd::cargo(
        &[
            "run",
            "--release",
            "--package",
            "api-shield-bench",
            "--bin",
            "bench-proxy",
        ],
        &full,
    )
}

/// Runs the benchmark.
pub fn run(args: &Args) -> Result<()> {
    setup::packages(&[("nftables", "nft"), ("ethtool", "ethtool")])?;
    let mut full = vec!["--".to_owned()];
    full.extend(args.args.iter().cloned());
    cmd::cargo(
        &[
            "run",
            "--release",
            "--package",
            "api-shield-bench",
            "--bin",
            "bench-xdp",
        ],
        &full,
    )
}
