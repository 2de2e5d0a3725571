//! What the soak runs against, and its cleanup: a CA and a server certificate, an HMAC secret
//! and an API key made for the run, the config (`config.rs`, checked by `api-shield check-config`),
//! the demo API as upstream, and the release daemon itself with the fast path attached to `lo`
//! in generic mode, its pin directory on bpffs and its control socket in a temp dir. Dropping
//! the [`Stack`] stops the daemon with SIGTERM (SIGKILL after a deadline), stops the demo API
//! and removes the pin directory and the temp dir.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc::{channel, Receiver, RecvTimeoutError},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::shield_cli::binary;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use rustls::pki_types::CertificateDer;

use super::config::{config_text, ConfigInputs, LIMITS};

/// Credentials the clients use.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// A valid token for the `user` route (subject `legit`).
    pub legit_token: String,
    /// A valid token of another subject, for the greedy client that bursts past the limit.
    pub greedy_token: String,
    /// A valid API key for the `admin` route.
    pub api_key: String,
}

/// Daemon log lines by level, and the file they are copied to.
#[derive(Debug, Default)]
pub struct LogCounts {
    /// Lines at level ERROR.
    pub errors: AtomicU64,
    /// Lines at level WARN.
    pub warnings: AtomicU64,
}

/// The running daemon and upstream, and everything made for them.
pub struct Stack {
    /// The HTTPS listener.
    pub https: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    /// The CA the clients trust.
    pub ca: CertificateDer<'static>,
    /// Where the daemon's maps are pinned (the layout directory).
    pub layout: PathBuf,
    /// Credentials for the clients.
    pub credentials: Credentials,
    /// Daemon log lines by level.
    pub log: Arc<LogCounts>,
    daemon: Option<Child>,
    demo: Option<Child>,
    pin_dir: PinDir,
    _dir: tempfile::TempDir,
}

/// How the daemon ended and what it left behind.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Its exit status (`None`: it had to be killed).
    pub status: Option<ExitStatus>,
    /// How long SIGTERM took.
    pub took: Duration,
    /// Whether an XDP program was still attached to `lo` afterwards.
    pub xdp_left_on_lo: bool,
}

/// A pin directory on bpffs for this run, removed with everything in it when dropped.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long the daemon may take to say `ready` (it loads and verifies the program).
const READY_TIMEOUT: Duration = Duration::from_mins(1);

impl Stack {
    /// Makes the files, checks the config, starts the demo API and the daemon, and waits until
    /// the daemon is ready. `daemon_log` receives the daemon's log lines.
    pub fn start(daemon_log: &Path) -> Result<Stack> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the soak attaches XDP to lo and writes bans: run it as root");
        }
        if xdp_on_lo()? {
            bail!(
                "an XDP program is already attached to lo (another daemon or test?): \
                 not touching it"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("api-shield-soak-")
            .tempdir()?;
        let pin_dir = PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/api-shield-soak-{}",
            std::process::id()
        )));
        let (ca, cert, key) = pki(dir.path())?;
        let secret = dir.path().join("hmac.secret");
        std::fs::write(&secret, random_hex(32)?)?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
        let (api_key, api_key_hash) = new_api_key()?;
        let https_port = free_port()?;
        let upstream_port = free_port()?;
        let config = dir.path().join("api-shield.toml");
        std::fs::write(
            &config,
            config_text(&ConfigInputs {
                dir: dir.path(),
                pin_dir: &pin_dir.0,
                cert: &cert,
                key: &key,
                secret: &secret,
                api_key_hash: &api_key_hash,
                https_port,
                upstream_port,
            }),
        )?;
        check_config(&config)?;
        let credentials = Credentials {
            legit_token: mint_token(&config, "legit")?,
            greedy_token: mint_token(&config, "greedy")?,
            api_key,
        };
        let demo = start_demo(upstream_port)?;
        let mut stack = Stack {
            https: SocketAddr::from((Ipv4Addr::LOCALHOST, https_port)),
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ca,
            layout: api_shield::fastpath::layout_dir(&pin_dir.0),
            credentials,
            log: Arc::new(LogCounts::default()),
            daemon: None,
            demo: Some(demo),
            pin_dir,
            _dir: dir,
        };
        let (child, lines) = spawn_daemon(&config, daemon_log, Arc::clone(&stack.log))?;
        stack.daemon = Some(child);
        let listening = wait_ready(&lines)?;
        stack.admin = listening
            .split(',')
            .find_map(|item| item.strip_prefix("admin="))
            .with_context(|| format!("no admin address in the ready line ({listening})"))?
            .parse()?;
        Ok(stack)
    }

    /// The daemon's pid.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Sends SIGTERM, waits (SIGKILL past the drain timeout plus a margin), stops the demo API
    /// and reports whether XDP was detached from `lo`.
    pub fn stop(&mut self) -> Result<Shutdown> {
        let started = Instant::now();
        let status = self.daemon.take().and_then(terminate);
        let took = started.elapsed();
        if let Some(mut demo) = self.demo.take() {
            let _ = demo.kill();
            let _ = demo.wait();
        }
        Ok(Shutdown {
            status,
            took,
            xdp_left_on_lo: xdp_on_lo()?,
        })
    }

    /// Where the pinned maps live (removed when the stack is dropped).
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir.0
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            terminate(daemon);
        }
        if let Some(mut demo) = self.demo.take() {
            let _ = demo.kill();
            let _ = demo.wait();
        }
    }
}

/// SIGTERM, then SIGKILL if the daemon outlives its drain timeout by 10 s.
fn terminate(mut child: Child) -> Option<ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
    let _ = kill(pid, Signal::SIGTERM);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    if let Ok(status) = rx.recv_timeout(LIMITS.drain_timeout + Duration::from_secs(10)) {
        return status.ok();
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = rx.recv();
    None
}

/// Whether `ip link show dev lo` lists an XDP program.
fn xdp_on_lo() -> Result<bool> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", "lo"])
        .output()
        .context("running `ip link show dev lo` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip link show dev lo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).contains(" xdp"))
}

/// A CA and a leaf for `localhost` and `127.0.0.1` signed by it: (CA DER, chain PEM, key PEM).
fn pki(dir: &Path) -> Result<(CertificateDer<'static>, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "api-shield soak CA");
    let ca = ca_params.clone().self_signed(&ca_key)?;
    let leaf_key = rcgen::KeyPair::generate()?;
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca.pem()))?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    Ok((ca.der().clone(), cert, key))
}

/// `bytes` random bytes from the kernel, in hex.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// A free TCP port on 127.0.0.1 (the fast path must know the listener's port before the daemon
/// binds it; the window between the two is the only race, and nothing else here binds ports).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `api-shield key new`: (the key, its SHA-256 as the config stores it).
fn new_api_key() -> Result<(String, String)> {
    let out = Command::new(binary())
        .args(["key", "new", "--id", "soak", "--scopes", "admin"])
        .output()
        .context("running api-shield key new (build it with cargo build --release first)")?;
    if !out.status.success() {
        bail!("key new failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    let key = text
        .lines()
        .find_map(|l| l.split_once("): ").map(|(_, k)| k.trim().to_owned()))
        .context("no key in the output of key new")?;
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("sha256 = "))
        .map(|h| h.trim_matches('"').to_owned())
        .context("no sha256 in the output of key new")?;
    Ok((key, hash))
}

/// A two-hour token of the `soak` issuer with scope `users:read`.
fn mint_token(config: &Path, subject: &str) -> Result<String> {
    crate::shield_cli::mint_token(config, "soak", subject, "users:read")
}

/// `api-shield check-config`: the config must pass before anything starts.
fn check_config(config: &Path) -> Result<()> {
    let out = Command::new(binary())
        .arg("check-config")
        .arg(config)
        .output()
        .context("running api-shield check-config")?;
    if !out.status.success() {
        bail!(
            "api-shield check-config refused the generated config: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `api-shield demo-api` on `port`, awaited through the line it prints when it listens.
fn start_demo(port: u16) -> Result<Child> {
    let mut child = Command::new(binary())
        .args(["demo-api", "--bind", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting api-shield demo-api")?;
    let stderr = child.stderr.take().context("piped stderr")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("listening") => return Ok(child),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the demo API did not start listening on 127.0.0.1:{port}");
            }
        }
    }
}

/// Starts `api-shield run --log-format json`; a thread copies its log to `log_path`, counts
/// levels and forwards lines until the receiver is dropped.
fn spawn_daemon(
    config: &Path,
    log_path: &Path,
    counts: Arc<LogCounts>,
) -> Result<(Child, Receiver<String>)> {
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut log = std::fs::File::create(log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = Command::new(binary())
        .args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting api-shield run")?;
    let stderr = child.stderr.take().context("piped stderr")?;
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut forward = true;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if line.contains("\"level\":\"ERROR\"") {
                counts.errors.fetch_add(1, Ordering::Relaxed);
            } else if line.contains("\"level\":\"WARN\"") {
                counts.warnings.fetch_add(1, Ordering::Relaxed);
            }
            forward = forward && tx.send(line).is_ok();
        }
    });
    Ok((child, rx))
}

/// Waits for the `ready` log line and returns its `listening` field.
fn wait_ready(lines: &Receiver<String>) -> Result<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("\"message\":\"ready\"") => {
                let json: serde_json::Value = serde_json::from_str(&line)?;
                return json["listening"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("no listening field in {line}"));
            }
            Ok(line) => seen.push(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!(
                    "the daemon was not ready within {READY_TIMEOUT:?}; log:\n{}",
                    seen.join("\n")
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                bail!(
                    "the daemon exited before it was ready; log:\n{}",
                    seen.join("\n")
                )
            }
        }
    }
}
