//! Running commands: echoed before they run, failing with their status.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// The workspace root (xtask's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command to completion; an error names it and its status.
pub fn exec(mut command: Command) -> Result<()> {
    eprintln!("+ {}", describe(&command));
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", describe(&command)))?;
    if !status.success() {
        bail!("{} failed: {status}", describe(&command));
    }
    Ok(())
}

/// Runs a command and returns its stdout when it succeeds.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo <args> <extra>` in the workspace root with the default toolchain.
pub fn cargo(args: &[&str], extra: &[String]) -> Result<()> {
    let mut command = Command::new(env!("CARGO"));
    command.args(args).args(extra).current_dir(workspace_root());
    exec(command)
}

/// `cargo <args>` with nightly, in `dir`.
pub fn nightly_cargo(dir: &Path, args: &[&str]) -> Result<()> {
    let mut command = Command::new("rustup");
    command
        .args(["run", "nightly", "cargo"])
        .args(args)
        .current_dir(dir);
    clean_toolchain_env(&mut command);
    exec(command)
}

/// Removes the variables the outer cargo sets, so an inner cargo picks its own toolchain.
pub fn clean_toolchain_env(command: &mut Command) {
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
