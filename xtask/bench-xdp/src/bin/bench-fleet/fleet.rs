//! The benchmark's fleet: a client namespace joined to N host namespaces by one veth pair
//! each, a Redis server of its own in the client namespace (listening on the client's end of
//! every link), and on each host the release daemon with XDP in driver mode on its link, the
//! demo API behind it, and the fleet table naming that Redis. Everything is removed when
//! dropped.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{child_guard::Guard, shield_cli};

/// The hosts' HTTPS port.
pub const PORT: u16 = 8443;
const REDIS_PORT: u16 = 6391;

/// One host: its namespace, config and processes.
pub struct Host {
    // Dropped first: the daemon stops before its upstream and namespace go.
    _daemon: Guard,
    _demo: Guard,
    /// Its pin directory.
    pub pins: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its daemon's pid.
    pub pid: u32,
}

/// The whole fleet.
pub struct Fleet {
    /// Dropped before the namespaces.
    pub hosts: Vec<Host>,
    redis: Option<Guard>,
    /// The client namespace.
    pub client: String,
    host_ns: Vec<String>,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Host `k`'s address.
pub fn host_addr(k: usize) -> String {
    format!("10.213.{}.2", k + 1)
}

fn redis_addr(k: usize) -> String {
    format!("10.213.{}.1", k + 1)
}

impl Fleet {
    /// Builds `n` hosts; the routes are appended to each host's config.
    pub fn start(n: usize, routes: &str) -> Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let tag = std::process::id() % 100_000;
        let client = format!("abf-c-{tag}");
        ip(&["netns", "add", &client])?;
        let mut fleet = Fleet {
            hosts: Vec::new(),
            redis: None,
            client: client.clone(),
            host_ns: Vec::new(),
            dir,
        };
        ip(&["-n", &client, "link", "set", "lo", "up"])?;
        for k in 0..n {
            let ns = format!("abf-h{k}-{tag}");
            ip(&["netns", "add", &ns])?;
            fleet.host_ns.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let (c_if, h_if) = (format!("bfc{k}-{tag}"), format!("bfh{k}-{tag}"));
            ip(&[
                "link", "add", &c_if, "netns", &client, "type", "veth", "peer", "name", &h_if,
                "netns", &ns,
            ])?;
            ip(&[
                "-n",
                &client,
                "addr",
                "add",
                &format!("{}/24", redis_addr(k)),
                "dev",
                &c_if,
            ])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", host_addr(k)),
                "dev",
                &h_if,
            ])?;
            ip(&["-n", &client, "link", "set", &c_if, "up"])?;
            ip(&["-n", &ns, "link", "set", &h_if, "up"])?;
        }
        fleet.redis = Some(fleet.start_redis(n)?);
        let (cert, key) = crate::proxy_peers::certificate(fleet.dir.path())?;
        for k in 0..n {
            let host = fleet.start_host(k, &cert, &key, routes)?;
            fleet.hosts.push(host);
        }
        Ok(fleet)
    }

    fn start_redis(&self, n: usize) -> Result<Guard> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.client, "redis-server"])
            .args(["--port", &REDIS_PORT.to_string(), "--bind"]);
        for k in 0..n {
            command.arg(redis_addr(k));
        }
        let redis = Guard(
            command
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--dir", "/tmp"])
                .stdout(Stdio::null())
                .spawn()
                .context("starting redis-server")?,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.redis_cli(&["PING"])?.trim() != "PONG" {
            if Instant::now() > deadline {
                bail!("redis-server never answered");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    /// `redis-cli` against the fleet's Redis; its output.
    pub fn redis_cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "redis-cli",
                "-h",
                &redis_addr(0),
            ])
            .args(["-p", &REDIS_PORT.to_string()])
            .args(args)
            .output()
            .context("running redis-cli")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start_host(&self, k: usize, cert: &Path, key: &Path, routes: &str) -> Result<Host> {
        let ns = &self.host_ns[k];
        let dir = self.dir.path().join(format!("host-{k}"));
        std::fs::create_dir_all(&dir)?;
        let pins = PathBuf::from(format!("/sys/fs/bpf/api-shield-bench-fleet-{k}"));
        let socket = dir.join("control.sock");
        let interface = format!("bfh{k}-{}", std::process::id() % 100_000);
        let config = dir.join("api-shield.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[fastpath]
interfaces = ["{interface}"]
mode = "driver"
max_bans = 262144
pin_dir = "{pins}"
runtime_dir = "{runtime}"
[fastpath.limiter.protect]
tcp = [{PORT}]

[control]
socket = "{socket}"

[access_log]
sink = "off"

[[listeners]]
bind = "{addr}:{PORT}"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "demo"
url = "http://127.0.0.1:9000"
{routes}
[fleet]
redis = "redis://{redis}:{REDIS_PORT}"
name = "bench"
host = "host-{k}"
"#,
                pins = pins.display(),
                runtime = dir.join("run").display(),
                socket = socket.display(),
                addr = host_addr(k),
                cert = cert.display(),
                key = key.display(),
                redis = redis_addr(k),
            ),
        )?;
        let demo = Guard(
            Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(shield_cli::binary())
                .args(["demo-api", "--bind", "127.0.0.1:9000"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the demo API")?,
        );
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        // nsenter, not `ip netns exec`: that one also gives the process a mount namespace of
        // its own, where the maps it pins would be out of the benchmark's sight.
        let daemon = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg(shield_cli::binary())
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the daemon")?;
        let pid = daemon.id();
        let daemon = Guard(daemon);
        let log = dir.join("daemon.log");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(&log)?.contains("fleet: connected and resynced") {
            if Instant::now() > deadline {
                bail!(
                    "host {k} never joined the fleet:\n{}",
                    std::fs::read_to_string(&log)?
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Host {
            _daemon: daemon,
            _demo: demo,
            pins,
            socket,
            pid,
        })
    }

    /// Runs `f` on a thread inside the client namespace (what it spawns runs there too).
    pub fn in_client<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.client);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("opening the namespace");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the namespace");
            f()
        })
        .join()
        .expect("the client thread")
    }

    /// Every daemon's resident memory, as the report prints it.
    pub fn daemons_rss(&self) -> Result<Vec<String>> {
        self.hosts
            .iter()
            .map(|h| rss(h.pid).map(|b| format!("{:.1} MiB", b as f64 / 1_048_576.0)))
            .collect()
    }

    /// Redis's `used_memory`, in bytes.
    pub fn redis_memory(&self) -> Result<u64> {
        let info = self.redis_cli(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no used_memory in INFO")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let pins: Vec<PathBuf> = self.hosts.iter().map(|h| h.pins.clone()).collect();
        self.hosts.clear();
        self.redis.take();
        for ns in self.host_ns.iter().chain(std::iter::once(&self.client)) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for dir in pins {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS")
}
