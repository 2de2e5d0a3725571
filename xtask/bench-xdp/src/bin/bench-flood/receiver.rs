//! What runs in bench-flood's receiver namespace: the release daemon (fast path on or off) in
//! front of an nginx upstream, the nftables ruleset, the control program (XDP attached, passing
//! everything), and the counters read around each cell.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{Xdp, XdpMode},
    Ebpf,
};
use nix::sched::{setns, CloneFlags};

use crate::{
    child_guard::Guard,
    shield_cli,
    topology::{ip, run, Topology},
};

/// The daemon's address for the keep-alive client and the new clients.
pub const RX: &str = "10.202.1.2";
/// A second address of the receiver; the sender reaches it from `NAT_SOURCE` only.
pub const RX_NAT: &str = "10.202.1.3";
/// The NAT-like client's one source address.
pub const NAT_SOURCE: &str = "10.202.0.200";
const UPSTREAM_PORT: u16 = 18080;

/// A per-source SYN meter and limit for tcp/443, and the same per-source limit as api-shield's
/// for udp/443 (the kernel's SYN cookies stay on): what an operator would write in nftables for
/// the same protection.
pub const NFT_RULES: &str = "table inet asx_flood {\n\
  chain input {\n\
    type filter hook input priority -10; policy accept;\n\
    tcp dport 443 tcp flags & (syn | ack) == syn meter asx_syn4 { ip saddr limit rate over 50/second burst 100 packets } drop\n\
    udp dport 443 meter asx_udp4 { ip saddr limit rate over 1000/second burst 2000 packets } drop\n\
  }\n\
}\n";

/// Routes, addresses and sysctls of the receiver as a host on the internet would have them.
pub fn prepare(topology: &Topology, sender_tso: bool) -> Result<()> {
    // One receive path for all traffic in every state, as a NIC has (its RSS queues take the
    // flood and the clients alike). A veth whose sender offloads TCP segmentation hands the
    // clients' segments to the receiving CPU's backlog, apart from the ring of 256 frames the
    // flood fills, unless an XDP program is attached: that turns the sender's TSO off, and the
    // clients' segments join the flood's ring. Off in every state, the states without XDP no
    // longer get a private path no NIC would give them (`--sender-tso` keeps it, to compare).
    if !sender_tso {
        netns_exec(
            &topology.tx_ns,
            &["ethtool", "-K", &topology.tx_if, "tso", "off", "gso", "off"],
        )?;
    }
    // bench-xdp coalesces the receiver's interrupts to measure CPU per packet; here latency is
    // measured, so the receiver's NAPI polls at once, as a host's default does.
    let sysfs = format!("/sys/class/net/{}", topology.rx_if);
    netns_exec(
        &topology.rx_ns,
        &[
            "sh",
            "-c",
            &format!("echo 0 > {sysfs}/gro_flush_timeout && echo 0 > {sysfs}/napi_defer_hard_irqs"),
        ],
    )?;
    // The receiver routes its answers back through the sender (as a host's default gateway
    // would) and takes packets from any source (no reverse-path filter): the bare kernel sees
    // the flood as it would from the internet.
    ip(&[
        "-n",
        &topology.rx_ns,
        "route",
        "add",
        "default",
        "via",
        "10.202.0.254",
    ])?;
    for key in ["all", "default", topology.rx_if.as_str()] {
        netns_exec(
            &topology.rx_ns,
            &["sysctl", "-qw", &format!("net.ipv4.conf.{key}.rp_filter=0")],
        )?;
    }
    netns_exec(
        &topology.rx_ns,
        &["sysctl", "-qw", "net.ipv4.tcp_syncookies=1"],
    )?;
    // The NAT-like client: one source address of its own, towards a second receiver address.
    ip(&[
        "-n",
        &topology.rx_ns,
        "addr",
        "add",
        &format!("{RX_NAT}/16"),
        "dev",
        &topology.rx_if,
    ])?;
    ip(&[
        "-n",
        &topology.tx_ns,
        "addr",
        "add",
        &format!("{NAT_SOURCE}/16"),
        "dev",
        &topology.tx_if,
    ])?;
    ip(&[
        "-n",
        &topology.tx_ns,
        "route",
        "add",
        &format!("{RX_NAT}/32"),
        "dev",
        &topology.tx_if,
        "src",
        NAT_SOURCE,
    ])?;
    Ok(())
}

/// The release daemon in the receiver on port 443 of every address, the fast path on or off,
/// with the shipped limiter defaults and udp/443 protected too (as for HTTP/3).
pub fn shield(
    topology: &Topology,
    dir: &Path,
    cert: &Path,
    key: &Path,
    fastpath: bool,
) -> Result<Shield> {
    // Maps of their own for each cell, so no limiter state carries over from the flood before.
    let pins = PathBuf::from(format!(
        "/sys/fs/bpf/asx-flood-{}-{}",
        std::process::id(),
        CELLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let config = format!(
        r#"
[fastpath]
enabled = {fastpath}
interfaces = ["{rx_if}"]
pin_dir = "{pins}"
runtime_dir = "{run}"

[fastpath.limiter.protect]
tcp = [443]
udp = [443]

[admin]
bind = "127.0.0.1:0"

[control]
socket = "{control}"

[proxy]
workers = 1

[[listeners]]
bind = "0.0.0.0:443"
[listeners.tls]
certificates = [{{ cert = "{cert}", key = "{key}" }}]

[[upstreams]]
name = "api"
url = "http://127.0.0.1:{UPSTREAM_PORT}"

[[routes]]
name = "api"
path = "/*"
upstream = "api"
"#,
        rx_if = topology.rx_if,
        pins = pins.display(),
        run = dir.join("run").display(),
        control = dir.join("control.sock").display(),
        cert = cert.display(),
        key = key.display(),
    );
    let path = dir.join("api-shield.toml");
    std::fs::write(&path, config)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &topology.rx_ns])
        .arg(shield_cli::binary())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting api-shield (build it with cargo build --release first)")?;
    let shield = Shield {
        daemon: Some(Guard(child)),
        pins,
        config: path,
    };
    wait_for_https(&topology.tx_ns)?;
    Ok(shield)
}

/// Cells measured so far (names each cell's pin directory).
static CELLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The daemon of one cell; dropped, it stops and its maps are unpinned.
pub struct Shield {
    daemon: Option<Guard>,
    pins: PathBuf,
    /// Its config file (for `api-shield stats`).
    pub config: PathBuf,
}

impl Drop for Shield {
    fn drop(&mut self) {
        // The daemon stops (and detaches) before its maps are unpinned.
        drop(self.daemon.take());
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

/// Waits until the daemon answers over HTTPS from the sender.
fn wait_for_https(tx_ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = Command::new("ip")
            .args([
                "netns",
                "exec",
                tx_ns,
                "curl",
                "-sk",
                "-o",
                "/dev/null",
                "-m",
                "2",
            ])
            .arg(format!("https://{RX}/"))
            .status()?;
        if status.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("api-shield did not answer on {RX}:443 within 20 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fast path's drop and answer counters that moved (`api-shield stats`), as
/// `reason packets, ...`.
pub fn xdp_drops(config: &Path) -> Result<String> {
    let out = Command::new(shield_cli::binary())
        .args(["stats", "--json", "--config"])
        .arg(config)
        .output()?;
    if !out.status.success() {
        bail!("api-shield stats: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let drops: Vec<String> = report["counters"]
        .as_array()
        .context("counters")?
        .iter()
        .filter(|c| {
            (c["action"] == "drop" || c["action"] == "answer")
                && c["packets"].as_u64().unwrap_or(0) > 0
        })
        .map(|c| format!("{} {}", c["reason"].as_str().unwrap_or("?"), c["packets"]))
        .collect();
    Ok(if drops.is_empty() {
        "none".to_owned()
    } else {
        drops.join(", ")
    })
}

/// The control state's program (`bench_bare_pass`) attached in driver mode to a veth (the
/// receiver's, or the sender's for the whole run); dropped, it detaches.
pub struct PassControl {
    _ebpf: Ebpf,
}

impl PassControl {
    /// On the receiver's veth: the control state.
    pub fn attach(topology: &Topology) -> Result<PassControl> {
        PassControl::attach_to(&topology.rx_ns, &topology.rx_if)
    }

    /// On `interface` in the namespace `ns`.
    pub fn attach_to(ns: &str, interface: &str) -> Result<PassControl> {
        let ns_path = format!("/run/netns/{ns}");
        let interface = interface.to_owned();
        // The interface name is resolved in the namespace of the attaching thread.
        let ebpf = std::thread::spawn(move || -> Result<Ebpf> {
            setns(File::open(&ns_path)?, CloneFlags::CLONE_NEWNET)
                .context("entering the namespace")?;
            let mut ebpf = Ebpf::load(crate::generator::FLOOD_OBJECT)?;
            let program: &mut Xdp = ebpf
                .program_mut("bench_bare_pass")
                .context("bench_bare_pass")?
                .try_into()?;
            program.load()?;
            program.attach(&interface, XdpMode::Driver)?;
            Ok(ebpf)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the attaching thread panicked"))??;
        Ok(PassControl { _ebpf: ebpf })
    }
}

/// The receiver veth's packet count (XDP drops included: they are counted on receive) and the
/// frames its ring had no room for, lost before any program or the stack saw them. The kernel
/// counts those where they were lost: as the receiver's drop when the in-kernel generator hands
/// an XDP frame over (the sender's transmit drop counts it again), as the sender's transmit drop
/// when a socket buffer is refused (`socket_generator`: the packet-socket generator).
pub fn link_counters(topology: &Topology, socket_generator: bool) -> Result<(u64, u64)> {
    let stats = |ns: &str, dev: &str| -> Result<serde_json::Value> {
        let out = ip(&["-n", ns, "-s", "-j", "link", "show", "dev", dev])?;
        let json: serde_json::Value = serde_json::from_str(&out)?;
        Ok(json[0]["stats64"].clone())
    };
    let rx = &stats(&topology.rx_ns, &topology.rx_if)?["rx"];
    let packets = rx["packets"].as_u64().context("rx packets")?;
    let refused = if socket_generator {
        stats(&topology.tx_ns, &topology.tx_if)?["tx"]["dropped"]
            .as_u64()
            .unwrap_or(0)
    } else {
        0
    };
    Ok((packets, rx["dropped"].as_u64().unwrap_or(0) + refused))
}

/// Pins the receiver veth's NAPI kthread(s) to `cpu`.
pub fn pin_napi(topology: &Topology, cpu: usize) -> Result<()> {
    pin_napi_threads(&topology.rx_if, cpu)
}

/// Puts the NAPI kthreads of `interface` on `cpu`.
fn pin_napi_threads(interface: &str, cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    for pid in crate::topology::napi_threads(interface)? {
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)?;
    }
    Ok(())
}

/// Runs both veth ends' NAPI kthreads at real-time priority (`SCHED_FIFO` 1), as a host runs
/// its NAPI polls: in softirq context, ahead of any process. At normal priority a kthread
/// waits its turn behind the daemon, nginx and the clients, and a ring of 256 frames overflows
/// in that wait at any flood rate, dropping legitimate segments with the flood's in every
/// state. The kernel's real-time throttling (95 % of each second) still leaves the processes
/// their share under a flood past what the receiver can take.
pub fn prioritise_napi(topology: &Topology) -> Result<()> {
    for interface in [&topology.rx_if, &topology.tx_if] {
        for pid in crate::topology::napi_threads(interface)? {
            let param = nix::libc::sched_param { sched_priority: 1 };
            // SAFETY: a plain system call on a thread id, with a parameter on the stack.
            if unsafe {
                nix::libc::sched_setscheduler(pid, nix::libc::SCHED_FIFO, &raw const param)
            } != 0
            {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("SCHED_FIFO for NAPI thread {pid}"));
            }
        }
    }
    Ok(())
}

/// Puts the sender's veth NAPI (where the receiver's replies arrive: SYN-ACKs, resets, the
/// responses) in threaded mode and its kthread on `cpu`. On a host the NIC puts replies on the
/// wire; on a veth pair their receive work would otherwise run on the receiving CPU, charging
/// the receiver for the sender's share. Again after a state's set-up: attaching or detaching a
/// program may restart a veth's NAPI, and with it the kthread.
pub fn pin_sender_napi(topology: &Topology, cpu: usize) -> Result<()> {
    let sysfs = format!("/sys/class/net/{}/threaded", topology.tx_if);
    netns_exec(&topology.tx_ns, &["sh", "-c", &format!("echo 1 > {sysfs}")])?;
    pin_napi_threads(&topology.tx_if, cpu)
}

/// The upstream: an nginx worker in the receiver answering `200 ok`.
pub fn upstream(rx_ns: &str, dir: &Path) -> Result<Guard> {
    let conf = dir.join("upstream.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {dir}/nginx-error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n keepalive_requests 1000000;\n server {{\n  listen 127.0.0.1:{UPSTREAM_PORT};\n  \
             location / {{ default_type text/plain; return 200 \"ok\"; }}\n }}\n}}\n",
            pid = dir.join("nginx.pid").display(),
            dir = dir.display(),
        ),
    )?;
    let child = Command::new("ip")
        .args(["netns", "exec", rx_ns, "nginx", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting nginx")?;
    Ok(Guard(child))
}

/// A self-signed certificate for the receiver's address.
pub fn certificate(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let generated = rcgen::generate_simple_self_signed(vec![RX.to_owned()])?;
    let cert = dir.join("flood.pem");
    let key = dir.join("flood.key");
    std::fs::write(&cert, generated.cert.pem())?;
    std::fs::write(&key, generated.signing_key.serialize_pem())?;
    Ok((cert, key))
}

pub fn netns_exec(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full, None)
}

pub fn netns_exec_stdin(ns: &str, args: &[&str], stdin: &str) -> Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full, Some(stdin))
}
