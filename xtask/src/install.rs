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
    pub destdir: PathBuf,
    /// Install the existing target/release/api-shield instead of building it first.
    #[arg(long)]
    pub no_build: bool,
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
    if !args.no_build {
        cmd::cargo(&["build", "--release", "--package", "api-shield"], &[])?;
    }
    let root = cmd::workspace_root();
    let binary = root.join("target/release/api-shield");
    if !binary.is_file() {
        bail!(
            "{} does not exist: build it (drop --no-build)",
            binary.display()
        );
    }
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
    // The unit's ConfigurationDirectoryMode (systemd logs a mismatch at every start).
    std::fs::set_permissions(
        under(d, "/etc/api-shield"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )?;
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
    man_pages(&binary, &root, d)?;
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
    for doc in [
        "README.md",
        "BENCHMARKS.md",
        "docs/architecture.md",
        "docs/benchmarking.md",
        "docs/reliability.md",
    ] {
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

/// A fresh, empty directory under `parent` for this process.
fn tempdir_under(parent: &Path) -> Result<PathBuf> {
    let dir = parent.join(format!("install-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// api-shield(8) and one page per subcommand (api-shield-run(8), ...), which it names.
fn man_pages(binary: &Path, root: &Path, destdir: &Path) -> Result<()> {
    let pages = tempdir_under(&root.join("target"))?;
    generated(
        binary,
        &["generate", "man", "--dir", &pages.display().to_string()],
    )?;
    let mut names: Vec<_> = std::fs::read_dir(&pages)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let page = std::fs::read(pages.join(&name))?;
        write(
            &under(destdir, "/usr/local/share/man/man8").join(&name),
            &page,
            0o644,
        )?;
    }
    std::fs::remove_dir_all(&pages)?;
    Ok(())
}
