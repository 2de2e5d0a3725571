//! `cargo xtask fuzz`: runs each cargo-fuzz target in `xtask/fuzz` for a bounded time (installs
//! cargo-fuzz if missing). Inputs that once failed live in the target's corpus directory and
//! are replayed first; new inputs go to a scratch corpus under `target/`, so a run leaves the
//! repository as it was. A failure stops with the crashing input's path.

use std::process::Command;

use anyhow::Result;

use crate::cmd;

/// The targets, in `xtask/fuzz/fuzz_targets/`.
pub const TARGETS: [&str; 7] = ["config", "path", "jwt", "openapi", "body", "schema", "xdp"];

/// cargo-fuzz version installed when missing.
const CARGO_FUZZ: &str = "0.13.2";

/// Options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Only this target.
    #[arg(long)]
    target: Option<String>,
}

/// Runs the targets.
pub fn run(args: &Args) -> Result<()> {
    let installed = Command::new(env!("CARGO"))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        println!("setup: cargo-fuzz: present");
    } else {
        println!("setup: cargo-fuzz: installing {CARGO_FUZZ}");
        cmd::cargo(
            &["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ],
            &[],
        )?;
    }
    let root = cmd::workspace_root();
    for target in TARGETS
        .iter()
        .filter(|t| args.target.as_deref().is_none_or(|only| only == **t))
    {
        let scratch = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)?;
        let mut command = Command::new("rustup");
        command
            .args([
                "run",
                "nightly",
                "cargo",
                "fuzz",
                "run",
                "--fuzz-dir",
                "xtask/fuzz",
            ])
            .arg(target)
            .arg(&scratch)
            .arg(root.join("xtask/fuzz/corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-rss_limit_mb=2048")
            .current_dir(&root);
        cmd::clean_toolchain_env(&mut command);
        cmd::exec(command)?;
    }
    Ok(())
}
