//! A fleet on one machine: a client namespace joined to N host namespaces by one veth pair
//! each, and a Redis server of the test's own in the client namespace, listening on the
//! client's end of every link (so each host reaches Redis over its own XDP-filtered link).
//!
//! Link k (from 1): client `10.210.k.1/24` on `fc{k}…`, host `10.210.k.2/24` on `fh{k}…`. The
//! client's sources (`add_source`) live on its loopback and are routed to every host, so one
//! source address reaches all of them, as one attacker reaching a load-balanced fleet.

use std::{
    net::Ipv4Addr,
    process::Command,
    time::{Duration, Instant},
};

use super::{
    daemon::ChildGuard,
    netns::{ip, mac, Netns},
};

/// The client namespace and the hosts' namespaces.
pub struct FleetNet {
    /// Where clients and Redis run.
    pub client: Netns,
    /// One per host, in order.
    pub hosts: Vec<Netns>,
    /// The host-side interface of each link (the program attaches there).
    pub host_ifs: Vec<String>,
    client_ifs: Vec<String>,
}

impl FleetNet {
    /// Builds `n` links.
    pub fn new(n: usize) -> FleetNet {
        let tag = super::unique("");
        let client = Netns::new(format!("asf-c-{tag}"));
        let mut net = FleetNet {
            client,
            hosts: Vec::new(),
            host_ifs: Vec::new(),
            client_ifs: Vec::new(),
        };
        for k in 1..=n {
            let host = Netns::new(format!("asf-h{k}-{tag}"));
            let (c_if, h_if) = (format!("fc{k}{tag}"), format!("fh{k}{tag}"));
            ip(&[
                "link",
                "add",
                &c_if,
                "netns",
                &net.client.name,
                "type",
                "veth",
                "peer",
                "name",
                &h_if,
                "netns",
                &host.name,
            ]);
            net.client
                .exec(&["addr", "add", &format!("10.210.{k}.1/24"), "dev", &c_if]);
            host.exec(&["addr", "add", &format!("10.210.{k}.2/24"), "dev", &h_if]);
            net.client.exec(&["link", "set", &c_if, "up"]);
            host.exec(&["link", "set", &h_if, "up"]);
            // The client's loopback sources are reached through this link, and so are the
            // client's ends of the other links (where a Redis Cluster's nodes announce
            // themselves).
            host.exec(&["route", "add", "10.211.0.0/24", "dev", &h_if]);
            host.exec(&["route", "add", "10.210.0.0/16", "dev", &h_if]);
            net.hosts.push(host);
            net.host_ifs.push(h_if);
            net.client_ifs.push(c_if);
        }
        net
    }

    /// The address of host `k` (from 0).
    pub fn host_addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 210, k as u8 + 1, 2)
    }

    /// The client's end of host `k`'s link (where Redis listens for it).
    pub fn redis_addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 210, k as u8 + 1, 1)
    }

    /// Adds a source address (in 10.211.0.0/24) to the client, with static neighbours on
    /// every host so no packet waits on ARP.
    pub fn add_source(&self, addr: Ipv4Addr) {
        self.client
            .exec(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        for (k, host) in self.hosts.iter().enumerate() {
            let mac = mac(&self.client, &self.client_ifs[k]);
            host.exec(&[
                "neigh",
                "replace",
                &addr.to_string(),
                "lladdr",
                &mac,
                "dev",
                &self.host_ifs[k],
                "nud",
                "permanent",
            ]);
        }
    }

    /// Starts a Redis server of the test's own on `port`, listening on the client's end of
    /// every link, with nothing saved to disk; returns once it answers.
    pub fn start_redis(&self, port: u16) -> ChildGuard {
        let redis = self.spawn_redis(&["--port".to_owned(), port.to_string()]);
        self.wait_for_pong(|| self.redis_cli(port, &["PING"]));
        redis
    }

    /// The same over TLS only (`tls.port`, the server certificate `tls.cert`, clients not
    /// asked for one), with the default user off: only `tls.user` may connect, and only to
    /// the keys and channels under `api-shield:`.
    pub fn start_redis_tls(&self, tls: &RedisTls) -> ChildGuard {
        let arg = |p: &std::path::Path| p.display().to_string();
        let mut args = vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            tls.port.to_string(),
            "--tls-cert-file".to_owned(),
            arg(&tls.cert),
            "--tls-key-file".to_owned(),
            arg(&tls.key),
            "--tls-ca-cert-file".to_owned(),
            arg(&tls.ca),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        // One argument per word of the config line (`user default off`).
        for line in [
            "user default off".to_owned(),
            format!(
                "user {} on >{} ~api-shield:* &api-shield:* +@all",
                tls.user, tls.password
            ),
        ] {
            let mut words = line.split(' ').map(str::to_owned);
            args.extend(words.next().map(|w| format!("--{w}")));
            args.extend(words);
        }
        let redis = self.spawn_redis(&args);
        self.wait_for_pong(|| self.redis_cli_tls(tls, &["PING"]));
        redis
    }

    fn spawn_redis(&self, args: &[String]) -> ChildGuard {
        let binds: Vec<String> = (0..self.hosts.len())
            .map(|k| self.redis_addr(k).to_string())
            .collect();
        ChildGuard::spawn(
            Command::new("ip")
                .args(["netns", "exec", &self.client.name, "redis-server"])
                .args(args)
                .arg("--bind")
                .args(&binds)
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "no",
                    "--dir",
                    "/tmp",
                ]),
        )
    }

    fn wait_for_pong(&self, ping: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ping().trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a Redis Cluster of three primaries of the test's own on `ports`, each listening
    /// on the client's end of every link and announcing the end of link 1 (which every host
    /// reaches through its own link); returns once the cluster says it is ok.
    pub fn start_redis_cluster(&self, ports: [u16; 3], dir: &std::path::Path) -> Vec<ChildGuard> {
        let binds: Vec<String> = (0..self.hosts.len())
            .map(|k| self.redis_addr(k).to_string())
            .collect();
        let announce = self.redis_addr(0).to_string();
        let nodes: Vec<ChildGuard> = ports
            .iter()
            .map(|port| {
                let config = dir.join(format!("nodes-{port}.conf"));
                ChildGuard::spawn(
                    Command::new("ip")
                        .args(["netns", "exec", &self.client.name, "redis-server"])
                        .args(["--port", &port.to_string(), "--bind"])
                        .args(&binds)
                        .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                        .arg(&config)
                        .args(["--cluster-announce-ip", &announce])
                        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                        .arg("--dir")
                        .arg(dir),
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            while self.redis_cli(port, &["PING"]).trim() != "PONG" {
                assert!(Instant::now() < deadline, "a cluster node never answered");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut create = Command::new("ip");
        create.args([
            "netns",
            "exec",
            &self.client.name,
            "redis-cli",
            "--cluster",
            "create",
        ]);
        for port in ports {
            create.arg(format!("{announce}:{port}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in ports {
            while !self
                .redis_cli(port, &["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(Instant::now() < deadline, "the cluster never became ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        nodes
    }

    /// Runs `redis-cli` over TLS as `tls.user`; its output.
    pub fn redis_cli_tls(&self, tls: &RedisTls, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client.name,
                "redis-cli",
                "--tls",
                "--cacert",
            ])
            .arg(&tls.ca)
            .args([
                "--user",
                &tls.user,
                "--pass",
                &tls.password,
                "--no-auth-warning",
            ])
            .arg("-h")
            .arg(self.redis_addr(0).to_string())
            .args(["-p", &tls.port.to_string()])
            .args(args)
            .output()
            .expect("running redis-cli (Debian package redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `redis-cli` against the test's Redis; its output.
    pub fn redis_cli(&self, port: u16, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client.name, "redis-cli", "-h"])
            .arg(self.redis_addr(0).to_string())
            .args(["-p", &port.to_string()])
            .args(args)
            .output()
            .expect("running redis-cli (Debian package redis-tools)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A TLS Redis of the test's own, and the one user it lets in.
pub struct RedisTls {
    pub port: u16,
    /// The server's certificate chain and key (PEM).
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// The CA that signed it.
    pub ca: std::path::PathBuf,
    pub user: String,
    pub password: String,
}

/// `redis-server`, or a loud skip (a failure when privileged tests are required: CI installs
/// it).
pub fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !super::privileged::required(),
            "{test}: redis-server (Debian package redis-server) is not installed"
        );
        eprintln!("skipping: {test}: redis-server (Debian package redis-server) is not installed");
    }
    found
}
