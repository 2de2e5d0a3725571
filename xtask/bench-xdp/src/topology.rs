//! Sender and receiver network namespaces joined by a veth pair, created for the run and
//! removed when dropped. Addresses exist only inside them.

use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// Receiver address; the flood's sources are 10.202.0.1..=252 in the same /16.
pub const RX_ADDR: [u8; 4] = [10, 202, 1, 2];
/// The UDP port the flood goes to (protected by the limiter).
pub const PORT: u16 = 9000;

/// The two namespaces and the veth pair.
pub struct Topology {
    /// Sender namespace.
    pub tx_ns: String,
    /// Receiver namespace.
    pub rx_ns: String,
    /// Sender veth.
    pub tx_if: String,
    /// Receiver veth.
    pub rx_if: String,
    /// Sender veth index (in the sender namespace).
    pub tx_index: u32,
    /// Receiver veth index (in the receiver namespace).
    pub rx_index: u32,
    /// Receiver veth MAC.
    pub rx_mac: [u8; 6],
    /// Sender veth MAC.
    pub tx_mac: [u8; 6],
}

/// Runs `ip` with arguments.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// Runs a command, optionally feeding stdin; fails with its stderr.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Topology {
    /// Builds the pair with GRO on the receiver (so the veth runs NAPI in every state) and its
    /// NAPI in threaded mode (so its CPU time is one kthread's).
    pub fn new() -> Result<Topology> {
        let tag = std::process::id() % 10_000;
        let tx_ns = format!("asx-bench-tx-{tag}");
        let rx_ns = format!("asx-bench-rx-{tag}");
        let tx_if = format!("asbt{tag}");
        let rx_if = format!("asbr{tag}");
        ip(&["netns", "add", &tx_ns])?;
        ip(&["netns", "add", &rx_ns])?;
        let mut topology = Topology {
            tx_ns,
            rx_ns,
            tx_if,
            rx_if,
            tx_index: 0,
            rx_index: 0,
            rx_mac: [0; 6],
            tx_mac: [0; 6],
        };
        let t = &topology;
        ip(&[
            "link", "add", &t.tx_if, "netns", &t.tx_ns, "type", "veth", "peer", "name", &t.rx_if,
            "netns", &t.rx_ns,
        ])?;
        ip(&[
            "-n",
            &t.tx_ns,
            "addr",
            "add",
            "10.202.0.254/16",
            "dev",
            &t.tx_if,
        ])?;
        ip(&[
            "-n",
            &t.rx_ns,
            "addr",
            "add",
            "10.202.1.2/16",
            "dev",
            &t.rx_if,
        ])?;
        for (ns, dev) in [(&t.tx_ns, &t.tx_if), (&t.rx_ns, &t.rx_if)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        run(
            "ip",
            &[
                "netns", "exec", &t.rx_ns, "ethtool", "-K", &t.rx_if, "gro", "on",
            ],
            None,
        )?;
        let sysfs = format!("/sys/class/net/{}", t.rx_if);
        let tuning = std::env::var("ASX_BENCH_COALESCE").unwrap_or_else(|_| "50000 10".into());
        let mut parts = tuning.split_whitespace();
        let (timeout, defer) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
        run(
            "ip",
            &[
                "netns", "exec", &t.rx_ns, "sh", "-c",
                &format!("echo 1 > {sysfs}/threaded && echo {timeout} > {sysfs}/gro_flush_timeout && echo {defer} > {sysfs}/napi_defer_hard_irqs"),
            ],
            None,
        )?;
        let (tx_index, tx_mac) = link_info(&topology.tx_ns, &topology.tx_if)?;
        let (rx_index, rx_mac) = link_info(&topology.rx_ns, &topology.rx_if)?;
        topology.tx_index = tx_index;
        topology.tx_mac = tx_mac;
        topology.rx_index = rx_index;
        topology.rx_mac = rx_mac;
        Ok(topology)
    }
}

/// PIDs of the kthreads `napi/<if>-<id>` (the name is cut to 15 bytes).
pub fn napi_threads(interface: &str) -> Result<Vec<i32>> {
    let prefix: String = format!("napi/{interface}-").chars().take(15).collect();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            if comm.trim_end().starts_with(&prefix) {
                pids.push(pid);
            }
        }
    }
    anyhow::ensure!(!pids.is_empty(), "no threaded NAPI kthread for {interface}");
    Ok(pids)
}

fn link_info(ns: &str, dev: &str) -> Result<(u32, [u8; 6])> {
    let out = ip(&["-n", ns, "-j", "link", "show", "dev", dev])?;
    let json: serde_json::Value = serde_json::from_str(&out)?;
    let index = json[0]["ifindex"].as_u64().context("ifindex")? as u32;
    let mac_text = json[0]["address"].as_str().context("address")?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16)?;
    }
    Ok((index, mac))
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.tx_ns]);
        let _ = ip(&["netns", "del", &self.rx_ns]);
    }
}
