//! The Debian tree the systemd test boots: built once with mmdebstrap and cached under
//! `target/systemd-test/rootfs-<hash>`, the hash covering the suite, variant and package list.
//! It is built under a temporary name and renamed when complete, so a killed build never leaves
//! a half tree that a later run would boot. Runs never write into it (the container boots it
//! with `--volatile=overlay`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result};

use super::host;
use crate::cmd;

const SUITE: &str = "bookworm";
const VARIANT: &str = "minbase";
/// No ca-certificates: a host without a system CA bundle must run a shield whose upstreams are
/// plain HTTP (the test's is), and this tree proves it does.
const INCLUDE: &[&str] = &["systemd", "systemd-sysv", "dbus", "iproute2"];

/// The cached tree, built first if missing.
pub fn cached(work: &Path) -> Result<PathBuf> {
    let key = format!("{SUITE} {VARIANT} {}", INCLUDE.join(","));
    let name = format!("rootfs-{:012x}", fnv1a(key.as_bytes()) >> 16);
    let dir = work.join(&name);
    if dir.join("usr/lib/systemd/systemd").is_file() {
        println!("test-systemd: rootfs {} (cached)", dir.display());
        return Ok(dir);
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let partial = work.join(format!("{name}.partial-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(&partial);
    let started = Instant::now();
    let mut build = Command::new("mmdebstrap");
    build
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", INCLUDE.join(",")))
        .arg(SUITE)
        .arg(&partial);
    cmd::exec(build)?;
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    println!(
        "test-systemd: rootfs {} built in {:.0?}",
        dir.display(),
        started.elapsed()
    );
    Ok(dir)
}

/// Removes the partial trees of builds whose process is gone.
pub fn reap_partial(work: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.split_once(".partial-") else {
            continue;
        };
        if name.starts_with("rootfs-") && !host::alive(pid) {
            eprintln!("test-systemd: removing the partial rootfs {name}");
            if let Err(error) = host::remove_tree(&entry.path()) {
                eprintln!("test-systemd: {error:#}");
            }
        }
    }
}

/// 64-bit FNV-1a: a hash that stays the same across Rust releases (the std hasher may not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(error) = host::remove_tree(self.0) {
            eprintln!("test-systemd: {error:#}");
        }
    }
}
