//! Builds the XDP program (`api-shield-ebpf`) with nightly for `bpfel-unknown-none` and leaves the
//! object in `OUT_DIR` for `include_bytes!`.
//!
//! Not aya-build: the program needs `-C target-cpu=v3` (BPF atomics for the shared limiter
//! state), which aya-build 0.2 gives no way to pass.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

const SETUP_HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir.join("../api-shield-ebpf").canonicalize()?;
    let common_dir = manifest_dir.join("../api-shield-common").canonicalize()?;
    for path in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        ebpf_dir.join("Cargo.lock"),
        common_dir.join("src"),
        common_dir.join("Cargo.toml"),
    ] {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    check_toolchain()?;
    build(&ebpf_dir, &out_dir)
}

/// Fails early, naming the fix, when a piece of the eBPF toolchain is missing.
fn check_toolchain() -> Result<()> {
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => PathBuf::from(String::from_utf8(out.stdout)?.trim()),
        _ => bail!("the nightly Rust toolchain is missing: {SETUP_HINT}"),
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        bail!("rust-src is missing from the nightly toolchain: {SETUP_HINT}");
    }
    if !bpf_linker_present() {
        bail!("bpf-linker is not installed: {SETUP_HINT}");
    }
    Ok(())
}

fn bpf_linker_present() -> bool {
    let on_path = env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()));
    on_path || cargo_home().join("bin/bpf-linker").is_file()
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(env::var("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    )
}

fn build(ebpf_dir: &Path, out_dir: &Path) -> Result<()> {
    let target_dir = out_dir.join("ebpf-target");
    let mut path = env::var_os("PATH").unwrap_or_default();
    if !path.is_empty() {
        path.push(":");
    }
    path.push(cargo_home().join("bin"));
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(ebpf_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Ctarget-cpu=v3", "-Cdebuginfo=2", "-Clink-arg=--btf"].join("\x1f"),
        )
        .env("PATH", path)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .context("running cargo for the eBPF crate")?;
    if !status.success() {
        bail!("building api-shield-ebpf failed ({status}); if the toolchain is incomplete, {SETUP_HINT}");
    }
    let object = target_dir.join("bpfel-unknown-none/release/api-shield-ebpf");
    std::fs::copy(&object, out_dir.join("api-shield-ebpf.o"))
        .with_context(|| format!("copying {}", object.display()))?;
    Ok(())
}
