//! The real `api-shield` binary as a child process: started in a namespace with `nsenter` (which
//! enters only the network namespace, so bpffs stays shared with the test), awaited through its
//! JSON log until it says `ready`, stopped with SIGTERM when dropped.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc::{channel, Receiver, RecvTimeoutError},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_api-shield"))
}

/// Runs the CLI (in the test's own namespace) and returns (exit code, stdout, stderr).
pub fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("running api-shield");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs the CLI and parses its JSON output; panics when it fails.
pub fn cli_json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = cli(args);
    assert_eq!(code, 0, "api-shield {}: {stderr}", args.join(" "));
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON from {args:?}: {e}: {stdout}"))
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    lines: Receiver<String>,
    /// Every log line read so far.
    pub log: Vec<String>,
}

/// How long a daemon may take to become ready (it loads and verifies the program).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Daemon {
    /// Starts `api-shield run --config CONFIG` inside network namespace `netns` (or the test's
    /// own when `None`) and waits for its `ready` line.
    pub fn start(netns: Option<&str>, config: &Path) -> Result<Daemon, StartFailure> {
        Daemon::start_with_env(netns, config, &[])
    }

    /// The same, with extra environment variables.
    pub fn start_with_env(
        netns: Option<&str>,
        config: &Path,
        env: &[(&str, &str)],
    ) -> Result<Daemon, StartFailure> {
        Daemon::start_wrapped(netns, &[], config, env)
    }

    /// The same, run by `wrapper` (a command line that ends by running the arguments appended
    /// to it, e.g. `sh -c '... && exec "$@"' sh`).
    pub fn start_wrapped(
        netns: Option<&str>,
        wrapper: &[&str],
        config: &Path,
        env: &[(&str, &str)],
    ) -> Result<Daemon, StartFailure> {
        let mut line: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = netns {
            line.push("nsenter".into());
            line.push(format!("--net=/run/netns/{ns}").into());
        }
        line.extend(wrapper.iter().map(Into::into));
        line.push(binary().into());
        let mut command = Command::new(&line[0]);
        command.args(&line[1..]);
        command
            .args(["run", "--log-format", "json", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("spawning the daemon");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child: Some(child),
            lines,
            log: Vec::new(),
        };
        match daemon.wait_for("\"message\":\"ready\"", READY_TIMEOUT) {
            Ok(()) => Ok(daemon),
            Err(why) => {
                let status = daemon.stop();
                Err(StartFailure {
                    why,
                    code: status.and_then(|s| s.code()),
                    log: daemon.log.join("\n"),
                })
            }
        }
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        if self.log.iter().any(|l| l.contains(needle)) {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no log line with {needle} within {timeout:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the daemon exited before logging {needle}"))
                }
            }
        }
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn wait_for_count(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while self.log.iter().filter(|l| l.contains(needle)).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.log.push(line),
                Err(_) => return Err(format!("fewer than {count} log lines with {needle}")),
            }
        }
        Ok(())
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Sends SIGTERM and waits for the exit; collects the rest of the log.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let status = child.wait().ok();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why a daemon did not become ready.
#[derive(Debug)]
pub struct StartFailure {
    /// What the wait saw.
    pub why: String,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Its log.
    pub log: String,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (exit code {:?}); log:\n{}",
            self.why, self.code, self.log
        )
    }
}

/// Starts the binary expecting it to fail; returns the failure, panicking if it became ready.
pub fn start_expecting_failure(netns: Option<&str>, config: &Path) -> StartFailure {
    match Daemon::start(netns, config) {
        Ok(mut daemon) => {
            daemon.stop();
            panic!(
                "the daemon started but should have refused; log:\n{}",
                daemon.log.join("\n")
            );
        }
        Err(failure) => failure,
    }
}

/// A helper process (an upstream, a load generator) killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Spawns `command` with its output discarded.
    pub fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(
            command
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning a helper process"),
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
