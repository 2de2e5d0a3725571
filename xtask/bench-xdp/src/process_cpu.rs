//! CPU time a process (and its descendants) has used, from `/proc` (user plus system time of
//! every thread): bench-gateway reads it around each load run to report what each proxy spends
//! per request, a figure the load generator and the upstream sharing the machine do not bound;
//! bench-flood reads it for the generator and the veths' NAPI kernel threads.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Seconds of CPU (user + system, all threads) used so far by `pid` and every process below it.
pub fn tree_seconds(pid: u32) -> Result<f64> {
    let ticks = clock_ticks()?;
    let mut total = 0u64;
    let mut pending = vec![pid];
    while let Some(pid) = pending.pop() {
        let proc = Path::new("/proc").join(pid.to_string());
        // A process that ended since its parent listed it used nothing more.
        let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
            continue;
        };
        total += own_ticks(&stat).with_context(|| format!("/proc/{pid}/stat"))?;
        pending.extend(children(&proc));
    }
    Ok(total as f64 / ticks)
}

/// Seconds of CPU (user + system, all threads) used so far by `pid` itself, without the
/// processes it started: a kernel thread, or a process whose children are measured apart.
pub fn own_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    Ok(own_ticks(&stat).with_context(|| format!("/proc/{pid}/stat"))? as f64 / clock_ticks()?)
}

/// Clock ticks per second, the unit of `/proc/PID/stat`'s times.
fn clock_ticks() -> Result<f64> {
    Ok(nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .context("the clock tick is unknown")? as f64)
}

/// utime + stime (fields 14 and 15) of one `/proc/PID/stat` line. The command name (field 2)
/// may hold spaces and parentheses: fields are counted after its last `)`.
fn own_ticks(stat: &str) -> Result<u64> {
    let rest = &stat[stat.rfind(')').context("no command name")? + 1..];
    // `rest` starts at field 3 (the state): utime is its 12th field, stime its 13th.
    let mut fields = rest.split_whitespace().skip(11);
    let mut field = || -> Result<u64> { Ok(fields.next().context("short stat line")?.parse()?) };
    Ok(field()? + field()?)
}

/// The children of every thread of the process at `proc`.
fn children(proc: &Path) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(proc.join("task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (nginx: (worker) x) S 1 2 3 4 5 6 7 8 9 10 170 30 0 0 20 0 1";
        assert_eq!(own_ticks(stat).unwrap(), 200);
    }

    #[test]
    fn a_busy_grandchild_is_counted_in_its_grandparents_tree() {
        // The shell waits (using next to nothing) while its subshell counts.
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "(i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done); sleep 30",
            ])
            .spawn()
            .unwrap();
        let pid = child.id();
        let _guard = crate::child_guard::Guard(child);
        let own = || own_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut tree = 0.0;
        while std::time::Instant::now() < deadline && tree < 0.2 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tree = tree_seconds(pid).unwrap();
        }
        assert!(
            tree >= 0.2,
            "the subshell's CPU time was not counted: {tree} s"
        );
        assert!(own().unwrap() < 5, "the shell itself should have waited");
    }
}
