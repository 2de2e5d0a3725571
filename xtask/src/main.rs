//! Developer tasks for api-shield: `cargo xtask <task>`.
//!
//! `setup` makes a fresh machine ready (nightly with rust-src, bpf-linker, the test tools);
//! `build`, `run`, `test` and `lint` call cargo the same way everywhere (README and CI);
//! `install` puts the daemon, its config and its systemd unit in place; `bench-xdp` and
//! `bench-proxy` measure (see BENCHMARKS.md); `soak` runs mixed legitimate and hostile traffic
//! and checks that memory, descriptors and map sizes stay flat (see docs/reliability.md);
//! `test-systemd` checks the installed unit under a real systemd (a container), and `test` runs
//! it after the workspace tests.

mod bench_xdp;
mod cmd;
mod fuzz;
mod install;
mod setup;
mod systemd_test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "api-shield developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (idempotent; quick when all is present).
    Setup,
    /// Set up, then build the release binary (with the XDP program embedded).
    Build,
    /// Set up, build, and run the daemon on config/api-shield.toml (needs root), with the demo
    /// API it fronts beside it.
    ///
    /// Extra arguments go to `api-shield run`, e.g. `cargo xtask run -- --log-format json`.
    Run {
        /// Arguments for `api-shield run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run every test (privileged ones need root; set
    /// `API_SHIELD_REQUIRE_PRIVILEGED=1` to make a skip a failure): `cargo test --workspace`,
    /// then, when it passes, `test-systemd`.
    Test {
        /// Arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// As root: boot a minimal Debian with systemd-nspawn, install the release build and the
    /// shipped unit into it, and check start, XDP, HTTPS, ban/unban, reload, watchdog and stop
    /// under its systemd (`--no-build` uses the existing target/release/api-shield).
    TestSystemd(systemd_test::Args),
    /// Build the release binary and install it with its config, systemd unit, man page and
    /// shell completions (`--destdir DIR` stages the tree there instead).
    Install(install::Args),
    /// Run each fuzz target (xtask/fuzz) for a bounded time, e.g. `cargo xtask fuzz --seconds
    /// 30`; installs cargo-fuzz when missing.
    Fuzz(fuzz::Args),
    /// cargo fmt --check and clippy -D warnings on the userspace crates and on the eBPF crate.
    Lint,
    /// Benchmark: receiver CPU per dropped packet, api-shield (generic, driver) vs nftables.
    BenchXdp(bench_xdp::Args),
    /// Benchmark: requests/s and latency over TLS, api-shield vs nginx vs the upstream direct.
    BenchProxy(bench_xdp::Args),
    /// Benchmark: the proxy as deployed, access logs on and off, api-shield vs nginx vs
    /// HAProxy over HTTP/1.1 and HTTP/2 at 1 and 2 workers.
    BenchGateway(bench_xdp::Args),
    /// Benchmark (as root): legitimate clients served during floods, api-shield vs nftables vs
    /// no filter, in network namespaces.
    BenchFlood(bench_xdp::Args),
    /// Benchmark (as root): fleet mode on three hosts in network namespaces with one Redis: ban
    /// propagation, the cost of fleet-scoped rate limits, and their accuracy.
    BenchFleet(bench_xdp::Args),
    /// Benchmark (as root): a CrowdSec decision (`cscli decisions add`) to its first packet
    /// dropped at the NIC, with a CrowdSec LAPI of its own in a network namespace.
    BenchCrowdsec(bench_xdp::Args),
    /// Benchmark (as root): deny lists of 0, 10 000 and 1 000 000 entries: load, update and
    /// kernel memory, and the per-packet cost of each, through `BPF_PROG_TEST_RUN`.
    BenchLists(bench_xdp::Args),
    /// Soak (as root): the release daemon on lo under bounded mixed legitimate and hostile
    /// traffic, sampling RSS, open fds, map sizes and error counts; fails unless they stay flat,
    /// e.g. `cargo xtask soak -- --seconds 120 --interval 10`.
    Soak(bench_xdp::Args),
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::run()?;
            build_release()
        }
        Task::Run { args } => {
            setup::run()?;
            build_release()?;
            let binary = cmd::workspace_root().join("target/release/api-shield");
            let config = cmd::workspace_root().join("config/api-shield.toml");
            // The default config fronts the demo API on 127.0.0.1:9000.
            let mut demo = std::process::Command::new(&binary)
                .args(["demo-api", "--bind", "127.0.0.1:9000"])
                .spawn()?;
            let mut run = std::process::Command::new(binary);
            run.arg("run").arg("--config").arg(config).args(args);
            let result = cmd::exec(run);
            let _ = demo.kill();
            let _ = demo.wait();
            result
        }
        Task::Test { args } => {
            setup::run()?;
            cmd::cargo(&["test", "--workspace"], &args)?;
            test_systemd(&systemd_test::Args { no_build: false }, false)
        }
        Task::TestSystemd(args) => test_systemd(&args, true),
        Task::Lint => lint(),
        Task::Fuzz(args) => {
            setup::run()?;
            fuzz::run(&args)
        }
        Task::Install(args) => {
            setup::run()?;
            install::run(&args)
        }
        Task::BenchXdp(args) => {
            setup::run()?;
            bench_xdp::run(&args)
        }
        Task::BenchProxy(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_proxy(&args)
        }
        Task::BenchGateway(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_gateway(&args)
        }
        Task::BenchFlood(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_flood(&args)
        }
        Task::BenchFleet(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_fleet(&args)
        }
        Task::BenchCrowdsec(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_crowdsec(&args)
        }
        Task::BenchLists(args) => {
            setup::run()?;
            bench_xdp::run_lists(&args)
        }
        Task::Soak(args) => {
            setup::run()?;
            build_release()?;
            bench_xdp::run_soak(&args)
        }
    }
}

/// Runs `test-systemd` (setting up first if asked, once it is known to run); a failed step
/// exits 1 after its report, whose closing line stays the last line.
fn test_systemd(args: &systemd_test::Args, set_up: bool) -> Result<()> {
    if !systemd_test::may_run()? {
        return Ok(());
    }
    if set_up {
        setup::run()?;
    }
    if !systemd_test::run(args)? {
        std::process::exit(1);
    }
    Ok(())
}

fn build_release() -> Result<()> {
    cmd::cargo(&["build", "--release", "--package", "api-shield"], &[])
}

fn lint() -> Result<()> {
    setup::run()?;
    cmd::cargo(&["fmt", "--all", "--check"], &[])?;
    cmd::cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    for crate_dir in ["api-shield-ebpf", "xtask/flood-ebpf"] {
        let dir = cmd::workspace_root().join(crate_dir);
        cmd::nightly_cargo(&dir, &["fmt", "--check"])?;
        cmd::nightly_cargo(&dir, &["clippy", "--release", "--", "-D", "warnings"])?;
    }
    // The fuzz targets: formatting only (they build with sanitizer flags under cargo-fuzz,
    // which `cargo xtask fuzz` and CI run).
    cmd::nightly_cargo(
        &cmd::workspace_root().join("xtask/fuzz"),
        &["fmt", "--check"],
    )?;
    Ok(())
}
