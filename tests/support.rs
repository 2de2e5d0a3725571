//! Shared test support: privilege checks, bpffs pin directories, network namespaces with veth
//! pairs, the daemon as a child process, hand-built frames and paced UDP traffic. Every guard
//! removes what it created when dropped.
#![allow(dead_code)]

pub mod admin;
pub mod crowdsec_lapi;
pub mod daemon;
pub mod fastpath_setup;
pub mod fleet_hosts;
pub mod fleet_net;
pub mod frames;
pub mod h2raw;
pub mod https;
pub mod netns;
pub mod privileged;
pub mod prog_test;
pub mod shield;
pub mod tokens;
pub mod traffic;

use std::sync::atomic::{AtomicU32, Ordering};

/// A name unique to this process and call, short enough for an interface name (15 bytes).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// Writes `text` to `name` in `dir`; its path as text (for command lines).
pub fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}
