//! Everything the systemd test creates on the host, and its removal: a run directory under
//! `target/systemd-test/run-<pid>` (staged install, private bpffs, container log), two network
//! namespaces joined by a veth pair (the only place the test's addresses exist), and the
//! container (booted by `container`). [`Sandbox`]'s `Drop` powers the container off (killing it
//! if it overstays), unmounts the bpffs, deletes the namespaces and removes the run directory
//! (and nspawn's leftovers), on success, failure and panic alike; `reap` does the same for what
//! a killed run left behind.

use std::{
    path::{Path, PathBuf},
    process::Child,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::host;

/// The server end of the veth pair (the container's interface, where XDP attaches).
pub const SERVER_IF: &str = "shield0";
/// The client end.
const CLIENT_IF: &str = "client0";
/// Network namespace names: a prefix and the pid of the run.
pub const NAMESPACE_PREFIXES: [&str; 2] = ["asd-srv-", "asd-cli-"];
/// Container (machine) names: a prefix and the pid of the run.
pub const MACHINE_PREFIX: &str = "asd-test-";
/// nspawn's per-machine directory on the host; it is left behind when a container is killed.
pub const PROPAGATE: &str = "/run/systemd/nspawn/propagate";

/// The test's host-side resources; dropping it removes them.
pub struct Sandbox {
    /// `target/systemd-test/run-<pid>`.
    pub dir: PathBuf,
    /// The server namespace (the container's), `asd-srv-<pid>`.
    pub server_ns: String,
    /// The client namespace, `asd-cli-<pid>`.
    pub client_ns: String,
    /// The server's address (inside the server namespace only).
    pub server_addr: String,
    /// The client's address (inside the client namespace only).
    pub client_addr: String,
    namespaces: Vec<String>,
    bpffs: Option<PathBuf>,
    /// The running systemd-nspawn, once booted.
    pub(super) nspawn: Option<Child>,
    /// The container's PID 1 (its systemd), once found.
    pub(super) pid1: Option<u32>,
}

impl Sandbox {
    /// Makes the run directory; nothing else yet.
    pub fn new(work: &Path) -> Result<Self> {
        let pid = std::process::id();
        let dir = work.join(format!("run-{pid}"));
        host::remove_tree(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let subnet = pid % 250;
        Ok(Self {
            dir,
            server_ns: format!("{}{pid}", NAMESPACE_PREFIXES[0]),
            client_ns: format!("{}{pid}", NAMESPACE_PREFIXES[1]),
            server_addr: format!("10.77.{subnet}.1"),
            client_addr: format!("10.77.{subnet}.2"),
            namespaces: Vec::new(),
            bpffs: None,
            nspawn: None,
            pid1: None,
        })
    }

    /// Where `cargo xtask install --destdir` stages the tree.
    pub fn stage(&self) -> PathBuf {
        self.dir.join("stage")
    }

    /// The container's machine name.
    pub fn machine() -> String {
        format!("{MACHINE_PREFIX}{}", std::process::id())
    }

    /// Creates both namespaces, the veth pair between them and their addresses. The host's root
    /// namespace is never touched: the pair is created inside the server namespace.
    pub fn network(&mut self) -> Result<()> {
        for ns in [self.server_ns.clone(), self.client_ns.clone()] {
            host::must("ip", &["netns", "add", &ns])?;
            self.namespaces.push(ns);
        }
        let (srv, cli) = (self.server_ns.as_str(), self.client_ns.as_str());
        host::must(
            "ip",
            &[
                "-n", srv, "link", "add", SERVER_IF, "type", "veth", "peer", "name", CLIENT_IF,
                "netns", cli,
            ],
        )?;
        for (ns, interface, addr) in [
            (srv, SERVER_IF, &self.server_addr),
            (cli, CLIENT_IF, &self.client_addr),
        ] {
            host::must(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    interface,
                ],
            )?;
            host::must("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            host::must("ip", &["-n", ns, "link", "set", interface, "up"])?;
        }
        Ok(())
    }

    /// Mounts a fresh bpffs for the container's /sys/fs/bpf (never the host's).
    pub fn bpffs(&mut self) -> Result<PathBuf> {
        let dir = self.dir.join("bpffs");
        std::fs::create_dir_all(&dir)?;
        host::must("mount", &["-t", "bpf", "bpf", &dir.to_string_lossy()])?;
        self.bpffs = Some(dir.clone());
        Ok(dir)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.nspawn.is_some() {
            let outcome = self.power_off();
            eprintln!("test-systemd: container {outcome}");
        }
        if let Some(bpffs) = self.bpffs.take() {
            host::unmount_all(&bpffs);
        }
        for ns in self.namespaces.drain(..) {
            let _ = host::run(Duration::from_secs(10), "ip", &["netns", "del", &ns]);
        }
        let propagate = Path::new(PROPAGATE).join(Self::machine());
        if let Err(error) = host::remove_tree(&propagate) {
            eprintln!("test-systemd: cleanup: {error:#}");
        }
        if let Err(error) = host::remove_tree(&self.dir) {
            eprintln!("test-systemd: cleanup: {error:#}");
        }
    }
}
