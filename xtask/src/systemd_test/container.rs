//! The container: systemd-nspawn booting the cached rootfs as an overlay (so the tree is never
//! written) into the test's server namespace, with a private bpffs and the staged binary, unit
//! and config directory bound in; finding its PID 1, running commands inside it, and powering it
//! off within a bounded time.

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{host, sandbox::Sandbox};

impl Sandbox {
    /// Boots `rootfs` (as an overlay: the tree is not written) in the server namespace with the
    /// staged binary, unit and config directory bound in; returns once its systemd is up and
    /// `systemctl is-system-running --wait` says running or degraded.
    pub fn boot(&mut self, rootfs: &Path, bpffs: &Path) -> Result<String> {
        let staged = self.stage();
        let log = self.dir.join("container.log");
        let machine = Self::machine();
        let mut nspawn = Command::new("setsid");
        nspawn
            .arg("systemd-nspawn")
            .arg("--directory")
            .arg(rootfs)
            .args([
                "--volatile=overlay",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
            ])
            .arg(format!("--machine={machine}"))
            .arg(format!(
                "--network-namespace-path=/run/netns/{}",
                self.server_ns
            ))
            // Without these the unit's ambient capabilities are silently dropped (nspawn keeps
            // CAP_NET_ADMIN only for networks it makes itself), and nspawn's own seccomp filter
            // refuses bpf(). CAP_NET_ADMIN reaches no further than the test's namespace.
            .arg("--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN")
            .arg("--system-call-filter=bpf perf_event_open")
            .arg(bind("--bind", bpffs, "/sys/fs/bpf"))
            .arg(bind(
                "--bind-ro",
                &staged.join("usr/local/bin/api-shield"),
                "/usr/local/bin/api-shield",
            ))
            .arg(bind(
                "--bind-ro",
                &staged.join("etc/systemd/system/api-shield.service"),
                "/etc/systemd/system/api-shield.service",
            ))
            .arg(bind(
                "--bind",
                &staged.join("etc/api-shield"),
                "/etc/api-shield",
            ))
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(self.dir.join("nspawn.err"))?);
        let child = nspawn.spawn().context("cannot start systemd-nspawn")?;
        let nspawn_pid = child.id();
        self.nspawn = Some(child);
        let pid1 = self.find_pid1(nspawn_pid, Duration::from_secs(15))?;
        self.pid1 = Some(pid1);
        // systemctl needs the manager's private socket, which appears early in its startup.
        let socket = PathBuf::from(format!("/proc/{pid1}/root/run/systemd/private"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!(
                    "the container's systemd made no {} within 30 s\n{}",
                    "/run/systemd/private",
                    self.container_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = self.inside(
            Duration::from_mins(1),
            &["systemctl", "is-system-running", "--wait"],
        )?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match state.as_str() {
            "running" => Ok(state),
            "degraded" => {
                let failed = self.inside(
                    Duration::from_secs(10),
                    &["systemctl", "--failed", "--no-pager"],
                )?;
                println!("{}", String::from_utf8_lossy(&failed.stdout));
                Ok(state)
            }
            _ => bail!(
                "the container's systemd is `{state}`, not running or degraded ({})\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.container_log()
            ),
        }
    }

    /// The container's PID 1: the child of nspawn once it has become systemd.
    fn find_pid1(&mut self, nspawn_pid: u32, limit: Duration) -> Result<u32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(pid) = host::children(nspawn_pid).into_iter().find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "systemd")
            }) {
                return Ok(pid);
            }
            if let Some(child) = &mut self.nspawn {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "systemd-nspawn exited ({status}) before the container booted\n{}",
                        self.container_log()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no systemd under systemd-nspawn (pid {nspawn_pid}) after {limit:?}\n{}",
                    self.container_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a command in all the container's namespaces (bounded by `limit`). The command keeps
    /// the host's capabilities and no seccomp filter: what is under test runs as a unit.
    pub fn inside(&self, limit: Duration, args: &[&str]) -> Result<Output> {
        let Some(pid1) = self.pid1 else {
            bail!("the container is not running");
        };
        let pid1 = pid1.to_string();
        let mut full = vec!["-t", pid1.as_str(), "-a"];
        full.extend_from_slice(args);
        host::run(limit, "nsenter", &full)
    }

    /// The last lines of the container's console.
    pub fn container_log(&self) -> String {
        let mut text = String::new();
        for name in ["container.log", "nspawn.err"] {
            let content = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            if !tail.is_empty() {
                let _ = writeln!(text, "--- {name} (last lines)\n{}", tail.join("\n"));
            }
        }
        text
    }

    /// Powers the container off and waits (bounded) for nspawn to exit; kills it if it
    /// overstays. Returns how it went, for the log.
    pub fn power_off(&mut self) -> String {
        let Some(mut child) = self.nspawn.take() else {
            return "not running".to_owned();
        };
        let started = Instant::now();
        if self.pid1.is_some() {
            let _ = self.inside(Duration::from_secs(10), &["systemctl", "poweroff"]);
        }
        let deadline = started + Duration::from_secs(20);
        let outcome = loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    break format!("exited ({status}) in {:.1?}", started.elapsed())
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                _ => {
                    // Killing the container's PID 1 ends its whole PID namespace.
                    if let Some(pid1) = self.pid1 {
                        let _ = host::run(
                            Duration::from_secs(5),
                            "kill",
                            &["-KILL", &pid1.to_string()],
                        );
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    break "killed after 20 s".to_owned();
                }
            }
        };
        self.pid1 = None;
        outcome
    }
}

fn bind(option: &str, source: &Path, target: &str) -> String {
    format!("{option}={}:{target}", source.display())
}
