//! Builds an eBPF crate with nightly for `bpfel-unknown-none` (`-Z build-std=core`,
//! `-C target-cpu=v3` for BPF atomics, and the target features the crate asks for) and copies
//! its object into `OUT_DIR`. Shared by the build scripts of `api-shield` (the XDP program) and
//! `api-shield-bench` (the flood generator).
//!
//! Not aya-build: it gives no way to pass `-C target-cpu=v3` or target features.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

const SETUP_HINT: &str = "run `cargo xtask setup` to install the eBPF toolchain";

/// Builds the eBPF binary `bin` of the crate in `crate_dir` and leaves it at
/// `OUT_DIR/<object>`. `watch` lists further paths whose change triggers a rebuild;
/// each of `target_features` is passed as `-C target-feature=` (e.g.
/// `+allows-misaligned-mem-access`).
pub fn build_ebpf(
    crate_dir: &Path,
    bin: &str,
    object: &str,
    watch: &[PathBuf],
    target_features: &[&str],
) -> Result<()> {
    let crate_dir = crate_dir
        .canonicalize()
        .with_context(|| format!("eBPF crate {}", crate_dir.display()))?;
    for path in [
        crate_dir.join("src"),
        crate_dir.join("Cargo.toml"),
        crate_dir.join("Cargo.lock"),
    ]
    .iter()
    .chain(watch)
    {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    check_toolchain()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let target_dir = out_dir.join("ebpf-target");
    let mut path = env::var_os("PATH").unwrap_or_default();
    if !path.is_empty() {
        path.push(":");
    }
    path.push(cargo_home().join("bin"));
    let mut rustflags = vec![
        "-Ctarget-cpu=v3".to_owned(),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
    ];
    rustflags.extend(
        target_features
            .iter()
            .map(|feature| format!("-Ctarget-feature={feature}")),
    );
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&crate_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        .env("PATH", path)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .with_context(|| format!("running cargo for {}", crate_dir.display()))?;
    if !status.success() {
        bail!(
            "building {} failed ({status}); if the toolchain is incomplete, {SETUP_HINT}",
            crate_dir.display()
        );
    }
    let built = target_dir.join("bpfel-unknown-none/release").join(bin);
    std::fs::copy(&built, out_dir.join(object))
        .with_context(|| format!("copying {}", built.display()))?;
    Ok(())
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
    let on_path = env::var_os("PATH")
        .is_some_and(|path| env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file()));
    if !on_path && !cargo_home().join("bin/bpf-linker").is_file() {
        bail!("bpf-linker is not installed: {SETUP_HINT}");
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(env::var("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    )
}
