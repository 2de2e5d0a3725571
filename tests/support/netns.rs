//! Network namespaces joined by a veth pair: a sender and a receiver on one machine, with
//! addresses only inside them. Removed when dropped.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    process::Command,
};

use nix::sched::{setns, CloneFlags};

/// Runs `ip` with arguments; panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Output of `ip` with arguments.
pub fn ip_output(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One network namespace.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with its loopback up.
    pub fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip -n NAME args`.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it opens live there).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("opening the namespace");
            setns(&file, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A sender and a receiver namespace joined by a veth pair.
///
/// Sender: 10.201.0.1/16 and fd00:201::1/64 on `tx_if`; receiver: 10.201.0.2/16 and
/// fd00:201::2/64 on `rx_if`. Extra source addresses are added with [`Topology::add_sources`].
pub struct Topology {
    /// The sender namespace.
    pub tx: Netns,
    /// The receiver namespace (the daemon runs here).
    pub rx: Netns,
    /// Sender-side interface.
    pub tx_if: String,
    /// Receiver-side interface (the program attaches here).
    pub rx_if: String,
}

/// Receiver IPv4 address.
pub const RX_V4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// Receiver IPv6 address.
pub const RX_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 2);

impl Topology {
    /// Builds the pair, addresses and static neighbours (so no packet waits on ARP/NDP).
    pub fn new() -> Topology {
        let tag = super::unique("");
        let tx = Netns::new(format!("asx-tx-{tag}"));
        let rx = Netns::new(format!("asx-rx-{tag}"));
        let tx_if = format!("astx{tag}");
        let rx_if = format!("asrx{tag}");
        let topology = Topology {
            tx,
            rx,
            tx_if,
            rx_if,
        };
        topology.add_link();
        topology
    }

    /// Creates the veth pair with its addresses and neighbours (again, after a test deleted it).
    pub fn add_link(&self) {
        let (tx, rx, tx_if, rx_if) = (&self.tx, &self.rx, &self.tx_if, &self.rx_if);
        ip(&[
            "link", "add", tx_if, "netns", &tx.name, "type", "veth", "peer", "name", rx_if,
            "netns", &rx.name,
        ]);
        tx.exec(&["addr", "add", "10.201.0.1/16", "dev", tx_if]);
        rx.exec(&["addr", "add", "10.201.0.2/16", "dev", rx_if]);
        tx.exec(&["addr", "add", "fd00:201::1/64", "dev", tx_if, "nodad"]);
        rx.exec(&["addr", "add", "fd00:201::2/64", "dev", rx_if, "nodad"]);
        tx.exec(&["link", "set", tx_if, "up"]);
        rx.exec(&["link", "set", rx_if, "up"]);
        let rx_mac = mac(rx, rx_if);
        for neighbour in ["10.201.0.2", "fd00:201::2"] {
            tx.exec(&[
                "neigh",
                "replace",
                neighbour,
                "lladdr",
                &rx_mac,
                "dev",
                tx_if,
                "nud",
                "permanent",
            ]);
        }
    }
    /// Adds source addresses to the sender.
    pub fn add_sources(&self, addrs: &[IpAddr]) {
        for addr in addrs {
            match addr {
                IpAddr::V4(v4) => {
                    self.tx
                        .exec(&["addr", "add", &format!("{v4}/16"), "dev", &self.tx_if])
                }
                IpAddr::V6(v6) => {
                    self.tx.exec(&[
                        "addr",
                        "add",
                        &format!("{v6}/64"),
                        "dev",
                        &self.tx_if,
                        "nodad",
                    ]);
                }
            }
        }
    }
}

/// The MAC address of `interface` in `ns`.
pub fn mac(ns: &Netns, interface: &str) -> String {
    let out = ip_output(&["-n", &ns.name, "-j", "link", "show", "dev", interface]);
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
    json[0]["address"]
        .as_str()
        .expect("interface has a MAC")
        .to_owned()
}
