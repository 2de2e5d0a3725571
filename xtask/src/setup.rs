//! `cargo xtask setup`: makes a fresh machine of this kind ready to build and test api-shield.
//! Each step says what it checks and skips what is present, so a second run takes a second.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::cmd::{self, clean_toolchain_env};

/// The bpf-linker release the project builds with (its default feature loads nightly's LLVM).
const BPF_LINKER_VERSION: &str = "0.10.4";
/// Debian packages the tests and benchmarks use, with a command each provides.
const PACKAGES: &[(&str, &str)] = &[("iproute2", "ip"), ("util-linux", "nsenter")];

/// Runs every step.
pub fn run() -> Result<()> {
    nightly()?;
    rust_src()?;
    bpf_linker()?;
    packages(PACKAGES)?;
    eprintln!("setup: ready");
    Ok(())
}

fn step(what: &str, present: bool) -> bool {
    if present {
        eprintln!("setup: {what}: present");
    } else {
        eprintln!("setup: {what}: installing");
    }
    present
}

fn nightly() -> Result<()> {
    let present = cmd::output("rustup", &["run", "nightly", "rustc", "--version"]).is_some();
    if step("nightly toolchain", present) {
        return Ok(());
    }
    let mut install = Command::new("rustup");
    install.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
    cmd::exec(install)
}

fn rust_src() -> Result<()> {
    let sysroot = cmd::output("rustup", &["run", "nightly", "rustc", "--print", "sysroot"])
        .unwrap_or_default();
    let present = PathBuf::from(sysroot.trim())
        .join("lib/rustlib/src/rust/library/core")
        .is_dir();
    if step("rust-src for nightly (build-std=core)", present) {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    cmd::exec(add)
}

fn bpf_linker() -> Result<()> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map_or_else(
            || PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"),
            PathBuf::from,
        )
        .join("bin/bpf-linker");
    let version = cmd::output("bpf-linker", &["--version"])
        .or_else(|| cmd::output(&cargo_bin.to_string_lossy(), &["--version"]))
        .unwrap_or_default();
    let present = version.trim() == format!("bpf-linker {BPF_LINKER_VERSION}");
    if step(&format!("bpf-linker {BPF_LINKER_VERSION}"), present) {
        return Ok(());
    }
    // Built from crates.io against the LLVM inside the nightly toolchain (no prebuilt
    // download exists for this machine kind); about a minute.
    let mut install = Command::new("rustup");
    install.args(["run", "nightly", "cargo", "install", "--locked", "--force"]);
    install.arg(format!("bpf-linker@{BPF_LINKER_VERSION}"));
    clean_toolchain_env(&mut install);
    cmd::exec(install)
}

/// Installs Debian packages whose command is missing (as root, with apt-get).
pub fn packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(package, command)| !step(package, which(command)))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix_is_root() {
        bail!("missing packages {missing:?}: install them, or run `cargo xtask setup` as root");
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    cmd::exec(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd::exec(install)
}

fn which(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join(command).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|dir| PathBuf::from(dir).join(command).is_file())
    })
}

fn nix_is_root() -> bool {
    cmd::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}
