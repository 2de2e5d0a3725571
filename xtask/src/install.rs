//! `cargo xtask install`: builds the release binary and puts it, the default config (never over
//! an existing one), the example files, the systemd unit, the man page, shell completions and
//! the docs in their standard places. `--destdir` stages the tree somewhere else (packaging,
//! CI's `systemd-analyze verify`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::cmd;

/// Options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stage everything under this directory instead of `/`.
    #[arg(long, default_value = "/")]
    destdir: PathBuf,
}

fn under(destdir: &Path, path: &str) -> PathBuf {
    destdir.join(path.trim_start_matches('/'))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    println!("install: {}", path.display());
    Ok(())
}

fn generated(binary: &Path, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(binary).args(args).output()?;
    if !out.status.success() {
        bail!(
            "api-shield {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Installs.
pub fn run(args: &Args) -> Result<()> {
    cmd::cargo(&["build", "--release", "--package", "api-shield"], &[])?;
    let root = cmd::workspace_root();
    let binary = root.join("target/release/api-shield");
    let d = &args.destdir;
    write(
        &under(d, "/usr/local/bin/api-shield"),
        &std::fs::read(&binary)?,
        0o755,
    )?;
    let config = under(d, "/etc/api-shield/api-shield.toml");
    if config.exists() {
        println!("install: {} exists, left as it is", config.display());
    } else {
        write(
            &config,
            &std::fs::read(root.join("config/api-shield.toml"))?,
            0o640,
        )?;
    }
    for entry in std::fs::read_dir(root.join("config/examples"))? {
        let entry = entry?;
        let target = under(d, "/etc/api-shield/examples").join(entry.file_name());
        write(&target, &std::fs::read(entry.path())?, 0o644)?;
    }
    write(
        &under(d, "/etc/systemd/system/api-shield.service"),
        &std::fs::read(root.join("config/api-shield.service"))?,
        0o644,
    )?;
    for file in ["prometheus-alerts.yml", "grafana-dashboard.json"] {
        write(
            &under(d, "/usr/local/share/api-shield").join(file),
            &std::fs::read(root.join("config").join(file))?,
            0o644,
        )?;
    }
    write(
        &under(d, "/usr/local/share/man/man8/api-shield.8"),
        &generated(&binary, &["generate", "man"])?,
        0o644,
    )?;
    for (shell, path) in [
        (
            "bash",
            "/usr/local/share/bash-completion/completions/api-shield",
        ),
        ("zsh", "/usr/local/share/zsh/site-functions/_api-shield"),
        (
            "fish",
            "/usr/local/share/fish/vendor_completions.d/api-shield.fish",
        ),
    ] {
        write(
            &under(d, path),
            &generated(&binary, &["generate", "completions", shell])?,
            0o644,
        )?;
    }
    for doc in ["README.md", "BENCHMARKS.md", "docs/architecture.md"] {
        let name = Path::new(doc).file_name().expect("a file name");
        write(
            &under(d, "/usr/local/share/doc/api-shield").join(name),
            &std::fs::read(root.join(doc))?,
            0o644,
        )?;
    }
    if d == Path::new("/") {
        let _ = Command::new("systemctl").arg("daemon-reload").status();
        println!(
            "next: edit /etc/api-shield/api-shield.toml, then `systemctl enable --now api-shield`"
        );
    }
    Ok(())
}
