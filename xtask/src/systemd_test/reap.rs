//! Cleaning up after runs that were killed before their cleanup ran (SIGKILL, Ctrl-C): their
//! containers, network namespaces, nspawn directories and run directories, found by the pid in
//! their names and removed only when that process is gone.

use std::{path::Path, time::Duration};

use super::{
    host,
    sandbox::{MACHINE_PREFIX, NAMESPACE_PREFIXES, PROPAGATE},
};

/// Cleans up after runs that were killed before their `Drop` ran: their containers, network
/// namespaces and run directories (found by the pid in their names).
pub fn reap_stale(work: &Path) {
    for pid in host::process_ids() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.first().is_some_and(|a| a.ends_with("systemd-nspawn")) {
            continue;
        }
        let owner = args.iter().find_map(|a| {
            a.strip_prefix("--machine=")
                .and_then(|m| m.strip_prefix(MACHINE_PREFIX))
        });
        if owner.is_some_and(|owner| !host::alive(owner)) {
            eprintln!("test-systemd: killing a stale container (nspawn pid {pid})");
            for child in host::children(pid) {
                let _ = host::run(
                    Duration::from_secs(5),
                    "kill",
                    &["-KILL", &child.to_string()],
                );
            }
            let _ = host::run(Duration::from_secs(5), "kill", &["-KILL", &pid.to_string()]);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = NAMESPACE_PREFIXES
                .iter()
                .find_map(|prefix| name.strip_prefix(prefix));
            if owner.is_some_and(|owner| !host::alive(owner)) {
                eprintln!("test-systemd: deleting the stale network namespace {name}");
                let _ = host::run(Duration::from_secs(10), "ip", &["netns", "del", &name]);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(PROPAGATE) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix(MACHINE_PREFIX)
                .is_some_and(|owner| !host::alive(owner))
            {
                let _ = host::remove_tree(&entry.path());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(work) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name
                .strip_prefix("run-")
                .is_some_and(|owner| !host::alive(owner))
            {
                eprintln!("test-systemd: removing the stale run directory {name}");
                if let Err(error) = host::remove_tree(&entry.path()) {
                    eprintln!("test-systemd: {error:#}");
                }
            }
        }
    }
}
