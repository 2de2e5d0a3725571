//! Host-side helpers for the systemd test: processes (alive, children), running a command with
//! a time bound (in a network namespace too), and removing a directory tree only when nothing
//! is mounted beneath it (a tree a killed run left behind may still hold a bpffs or a build's
//! /proc, and deleting through a mount point would delete what is mounted there).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// Whether the process with this id (as text, e.g. from a file name) is running.
pub fn alive(pid: &str) -> bool {
    pid.parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Runs `program args` bounded by `timeout(1)` and returns its output, whatever its status.
pub fn run(limit: Duration, program: &str, args: &[&str]) -> Result<Output> {
    Command::new("timeout")
        .args(["--kill-after=5", &format!("{}", limit.as_secs().max(1))])
        .arg(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))
}

/// Runs a command in a network namespace (`ip netns exec`), bounded by `limit`.
pub fn in_netns(ns: &str, limit: Duration, args: &[&str]) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run(limit, "ip", &full)
}

/// Runs a command that must succeed (bounded to a minute).
pub fn must(program: &str, args: &[&str]) -> Result<String> {
    let out = run(Duration::from_mins(1), program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Mount points at or below `path`, deepest first.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(path) = path.canonicalize() else {
        return Vec::new();
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(&path))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found.dedup();
    found
}

/// Unmounts everything at or below `path` (lazily when busy).
pub fn unmount_all(path: &Path) {
    for point in mounts_under(path) {
        let point = point.to_string_lossy().into_owned();
        let plain = run(Duration::from_secs(10), "umount", &[&point]);
        if !plain.is_ok_and(|out| out.status.success()) {
            let _ = run(Duration::from_secs(10), "umount", &["--lazy", &point]);
        }
    }
}

/// Removes a tree, after unmounting what is mounted in it; refuses if something stays mounted.
pub fn remove_tree(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    unmount_all(path);
    let left = mounts_under(path);
    if !left.is_empty() {
        bail!(
            "not removing {}: still mounted beneath it: {left:?}",
            path.display()
        );
    }
    std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        if let Some(code) = code {
            out.push(char::from(code));
            rest = &rest[at + 4..];
        } else {
            out.push('\\');
            rest = &rest[at + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// The ids of the running processes.
pub fn process_ids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes whose parent is `parent` (from /proc/PID/stat).
pub fn children(parent: u32) -> Vec<u32> {
    process_ids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // The fields after the command name (which may hold spaces) start after ')'.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}
