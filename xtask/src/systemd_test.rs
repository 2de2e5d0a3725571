//! `cargo xtask test-systemd`: the installed unit under a real systemd. Boots a minimal Debian
//! with systemd-nspawn (systemd as its PID 1) in a network namespace of its own, installs the
//! release build and the shipped unit into it exactly as `cargo xtask install` stages them, and
//! checks what an operator does: start, XDP attached, HTTPS served, ban and unban, reload
//! (accepted and refused), watchdog, stop; and the unit's exposure score. Needs root.
//!
//! This file runs the steps and reports them; `rootfs` owns the cached Debian tree, `sandbox`
//! what the test creates on the host (and its cleanup), `container` the systemd-nspawn
//! container, `reap` what killed runs left behind, `config` the daemon config the test writes,
//! `steps` the checks and `probes` how they look (systemctl, journal, ip, curl, stats), `host`
//! small process and mount helpers.

mod config;
mod container;
mod host;
mod probes;
mod reap;
mod rootfs;
mod sandbox;
mod steps;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use crate::{cmd, install, setup};
use sandbox::Sandbox;

/// Options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Use the existing target/release/api-shield instead of building it.
    #[arg(long)]
    pub no_build: bool,
}

/// Debian packages the test drives, with a command each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("systemd-container", "systemd-nspawn"),
    ("mmdebstrap", "mmdebstrap"),
    ("curl", "curl"),
];

/// Whether the test can run here: as root. Otherwise it says it skips (`Ok(false)`), or fails
/// when `API_SHIELD_REQUIRE_PRIVILEGED=1` forbids skipping.
pub fn may_run() -> Result<bool> {
    if cmd::output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0") {
        return Ok(true);
    }
    if std::env::var_os("API_SHIELD_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        bail!("test-systemd needs root (API_SHIELD_REQUIRE_PRIVILEGED=1 forbids skipping)");
    }
    println!("skipping: test-systemd needs root");
    Ok(false)
}

/// Runs the test (the caller has checked [`may_run`]); `Ok(false)` when a step failed (the
/// report is printed either way).
pub fn run(args: &Args) -> Result<bool> {
    setup::packages(PACKAGES)?;
    let mut report = Report::default();
    let work = cmd::workspace_root().join("target/systemd-test");
    reap::reap_stale(&work);
    rootfs::reap_partial(&work);
    let mut sandbox = Sandbox::new(&work)?;
    let started = Instant::now();
    let stage = sandbox.stage();
    let staged = report.step("stage the install", || {
        install::run(&install::Args {
            destdir: stage.clone(),
            no_build: args.no_build,
        })
        .map(|()| stage.display().to_string())
    });
    if staged {
        let booted = report.step("boot", || boot(&mut sandbox, &work));
        if booted {
            sequence(&sandbox, &mut report);
        }
    }
    let unit = sandbox
        .stage()
        .join("etc/systemd/system/api-shield.service");
    report.step("exposure score", || steps::security(&unit));
    let outcome = sandbox.power_off();
    println!("test-systemd: container {outcome}");
    drop(sandbox);
    println!("test-systemd: took {:.1?}", started.elapsed());
    Ok(report.finish())
}

/// Network, private bpffs, test config, cached rootfs, boot, and the demo API.
fn boot(sandbox: &mut Sandbox, work: &std::path::Path) -> Result<String> {
    let rootfs = rootfs::cached(work)?;
    sandbox.network()?;
    // check-config looks the interface up, so it runs in the server namespace.
    let config = sandbox.stage().join("etc/api-shield/api-shield.toml");
    std::fs::write(&config, config::good(sandbox::SERVER_IF))?;
    let check = host::in_netns(
        &sandbox.server_ns,
        Duration::from_secs(30),
        &[
            &sandbox
                .stage()
                .join("usr/local/bin/api-shield")
                .to_string_lossy(),
            "check-config",
            &config.to_string_lossy(),
        ],
    )?;
    if !check.status.success() {
        bail!(
            "the test config does not pass check-config: {}",
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    let bpffs = sandbox.bpffs()?;
    let started = Instant::now();
    let state = sandbox.boot(&rootfs, &bpffs)?;
    let booted = started.elapsed();
    steps::demo_api(&steps::Ctx {
        sandbox,
        config: config.clone(),
    })?;
    Ok(format!(
        "systemd {state} in {booted:.1?}; demo API up; {} <-> {}",
        sandbox.server_addr, sandbox.client_addr
    ))
}

/// The operator's sequence: stops at the first failure (the later steps rely on it).
fn sequence(sandbox: &Sandbox, report: &mut Report) {
    let ctx = steps::Ctx {
        sandbox,
        config: sandbox.stage().join("etc/api-shield/api-shield.toml"),
    };
    for (index, (name, check)) in steps::SEQUENCE.iter().enumerate() {
        let passed = report.step(name, || {
            check(&ctx).map_err(|error| anyhow!("{error:#}\n{}", steps::journal(sandbox)))
        });
        if !passed {
            let skipped: Vec<&str> = steps::SEQUENCE[index + 1..]
                .iter()
                .map(|(name, _)| *name)
                .collect();
            if !skipped.is_empty() {
                println!("test-systemd: not run: {}", skipped.join(", "));
            }
            return;
        }
    }
}

#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    /// Runs one step and prints its line; true when it passed.
    fn step(&mut self, name: &str, check: impl FnOnce() -> Result<String>) -> bool {
        let started = Instant::now();
        match check() {
            Ok(detail) => {
                self.passed += 1;
                let detail = if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                };
                println!(
                    "test-systemd: ok: {name}{detail} ({:.1?})",
                    started.elapsed()
                );
                true
            }
            Err(error) => {
                self.failed += 1;
                println!("test-systemd: FAILED: {name}: {error:#}");
                false
            }
        }
    }

    fn finish(&self) -> bool {
        println!(
            "test-systemd: {} passed, {} failed",
            self.passed, self.failed
        );
        self.failed == 0
    }
}
