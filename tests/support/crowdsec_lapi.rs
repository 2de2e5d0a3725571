//! A CrowdSec Local API of the test's own: Debian's `crowdsec` binary run with a private config
//! and SQLite database in a temporary directory (never the system's), listening on loopback
//! inside a namespace of the test, with no Central API (it runs offline). `cscli` drives it as
//! an operator would: machines, bouncers, decisions.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use super::{daemon::ChildGuard, netns::Netns};

/// The LAPI's port inside the namespace.
const PORT: u16 = 18080;

/// `crowdsec` and `cscli` (Debian package crowdsec, unpacked by `.ci/run`), or a loud skip (a
/// failure when privileged tests are required).
pub fn crowdsec_available(test: &str) -> bool {
    let found = ["crowdsec", "cscli"].iter().all(|b| {
        Command::new(b)
            .arg("-h")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        assert!(
            !super::privileged::required(),
            "{test}: crowdsec and cscli (Debian package crowdsec; .ci/run unpacks it) are not installed"
        );
        eprintln!(
            "skipping: {test}: crowdsec and cscli (Debian package crowdsec) are not installed"
        );
    }
    found
}

/// The LAPI: its files, its process (while running) and the namespace it listens in.
pub struct Lapi {
    config: PathBuf,
    netns: String,
    process: Option<ChildGuard>,
}

impl Lapi {
    /// Writes a config in `dir`, registers the local machine (for `cscli decisions`) and starts
    /// the LAPI in `netns`.
    pub fn start(dir: &Path, netns: &Netns) -> Lapi {
        let data = dir.join("data");
        std::fs::create_dir_all(dir.join("hub")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dir.join("simulation.yaml"), "simulation: false\n").unwrap();
        std::fs::write(
            dir.join("profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n  - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n  - type: ban\n    duration: 4h\non_success: break\n",
        )
        .unwrap();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\n\
                 config_paths:\n  config_dir: {d}/\n  data_dir: {data}/\n  simulation_path: {d}/simulation.yaml\n  hub_dir: {d}/hub/\n  index_path: {d}/hub/.index.json\n\
                 db_config:\n  type: sqlite\n  db_path: {data}/crowdsec.db\n  log_level: info\n\
                 api:\n  client:\n    credentials_path: {d}/local_api_credentials.yaml\n  server:\n    listen_uri: 127.0.0.1:{PORT}\n    profiles_path: {d}/profiles.yaml\n    trusted_ips: [127.0.0.1]\n\
                 prometheus:\n  enabled: false\n",
                d = dir.display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let mut lapi = Lapi {
            config,
            netns: netns.name.clone(),
            process: None,
        };
        let credentials = dir.join("local_api_credentials.yaml");
        lapi.cscli(&[
            "machines",
            "add",
            "local",
            "-a",
            "-f",
            &credentials.display().to_string(),
            "--force",
        ]);
        lapi.resume();
        lapi
    }

    /// The URL the daemon in the same namespace pulls.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{PORT}")
    }

    /// Starts the LAPI (again, on the same database); returns once it answers.
    pub fn resume(&mut self) {
        self.process = Some(ChildGuard::spawn(
            Command::new("ip")
                .args(["netns", "exec", &self.netns, "crowdsec", "-c"])
                .arg(&self.config)
                .arg("-no-cs"),
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "the CrowdSec LAPI never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the LAPI (its database stays).
    pub fn stop(&mut self) {
        self.process.take();
    }

    /// Whether the LAPI accepts connections (inside its namespace).
    fn answers(&self) -> bool {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpStream::connect(("127.0.0.1", PORT)).is_ok()
        })
        .join()
        .unwrap()
    }

    /// Runs `cscli` on this LAPI's config; its stdout. Panics on failure.
    pub fn cscli(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "cscli", "-c"])
            .arg(&self.config)
            .args(args)
            .output()
            .expect("running cscli");
        assert!(
            out.status.success(),
            "cscli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Registers a bouncer; writes its key to a root-only file in `dir` and returns the path.
    pub fn bouncer_key_file(&self, dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let key = self.cscli(&["bouncers", "add", name, "-o", "raw"]);
        let path = dir.join(format!("{name}.key"));
        std::fs::write(&path, key.trim()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }
}
