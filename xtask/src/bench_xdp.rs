//! `cargo xtask bench-xdp`, `cargo xtask bench-proxy`, `cargo xtask bench-gateway`, `cargo
//! xtask bench-flood`, `cargo xtask bench-fleet`, `cargo xtask bench-crowdsec` and `cargo xtask
//! soak`: install what each drives (nftables and ethtool; nginx and wrk; nginx, HAProxy, wrk and
//! h2load; nginx, wrk, curl, nftables and ethtool; redis-server and wrk; nothing for
//! bench-crowdsec, whose crowdsec `.ci/run` unpacks, or the soak) if missing, then run its
//! binary from `xtask/bench-xdp` in release mode. Reports go to stdout and `target/bench-*.md`
//! (`target/soak.md`); BENCHMARKS.md and docs/reliability.md record them.

use anyhow::Result;

use crate::{cmd, setup};

/// Arguments passed through to the benchmark binary.
#[derive(clap::Args)]
pub struct Args {
    /// e.g. `-- --cycles 8 --seconds 2 --settle 0.5`
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs the XDP benchmark.
pub fn run(args: &Args) -> Result<()> {
    run_bench(
        "bench-xdp",
        &[("nftables", "nft"), ("ethtool", "ethtool")],
        args,
    )
}

/// Runs the proxy benchmark.
pub fn run_proxy(args: &Args) -> Result<()> {
    // The benchmark runs the release daemon binary.
    cmd::cargo(&["build", "--release", "--package", "api-shield"], &[])?;
    run_bench("bench-proxy", &[("nginx", "nginx"), ("wrk", "wrk")], args)
}

/// Runs bench-gateway (the caller has built the release daemon it starts).
pub fn run_gateway(args: &Args) -> Result<()> {
    run_bench(
        "bench-gateway",
        &[
            ("nginx", "nginx"),
            ("haproxy", "haproxy"),
            ("wrk", "wrk"),
            ("nghttp2-client", "h2load"),
        ],
        args,
    )
}

/// Runs bench-flood (the caller has built the release daemon it starts).
pub fn run_flood(args: &Args) -> Result<()> {
    run_bench(
        "bench-flood",
        &[
            ("nginx", "nginx"),
            ("wrk", "wrk"),
            ("curl", "curl"),
            ("nftables", "nft"),
            ("ethtool", "ethtool"),
        ],
        args,
    )
}

/// Runs bench-fleet (the caller has built the release daemon it starts).
pub fn run_fleet(args: &Args) -> Result<()> {
    run_bench(
        "bench-fleet",
        &[("redis-server", "redis-server"), ("wrk", "wrk")],
        args,
    )
}

/// Runs bench-crowdsec (the caller has built the release daemon it starts). CrowdSec is not
/// installed here: Debian's package needs the internet to configure, so `.ci/run` unpacks it.
pub fn run_crowdsec(args: &Args) -> Result<()> {
    run_bench("bench-crowdsec", &[], args)
}

/// Runs bench-lists (it loads the program itself; nothing to install).
pub fn run_lists(args: &Args) -> Result<()> {
    run_bench("bench-lists", &[], args)
}

/// Runs the soak scenario (the caller has built the release daemon it starts).
pub fn run_soak(args: &Args) -> Result<()> {
    run_bench("soak", &[], args)
}

fn run_bench(binary: &str, packages: &[(&str, &str)], args: &Args) -> Result<()> {
    setup::packages(packages)?;
    let mut full = vec!["--".to_owned()];
    full.extend(args.args.iter().cloned());
    cmd::cargo(
        &[
            "run",
            "--release",
            "--package",
            "api-shield-bench",
            "--bin",
            binary,
        ],
        &full,
    )
}
