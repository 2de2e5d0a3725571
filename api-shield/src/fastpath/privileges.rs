//! Checks, before touching the kernel, that this process may use BPF and attach XDP programs,
//! so a missing capability is one clear error rather than a failure deep in a syscall.

use super::FastpathError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The names of the capabilities the fast path needs and the process lacks.
pub fn missing() -> Vec<&'static str> {
    let effective = effective_caps().unwrap_or(0);
    let has = |cap: u32| effective & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// Fails with [`FastpathError::NotPermitted`] naming what is missing.
pub fn check() -> Result<(), FastpathError> {
    let missing = missing();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(FastpathError::MissingCapabilities {
            missing: missing.join(", "),
        })
    }
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}
