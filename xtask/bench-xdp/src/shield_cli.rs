//! The release `api-shield` binary that bench-proxy and the soak drive, and the CLI call both
//! make to get a bearer token. Included by both binaries (`#[path]`), not by bench-xdp.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

/// The release build of the daemon (`cargo build --release` puts it there).
pub fn binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/api-shield")
}

/// A two-hour token from `api-shield token new` with the issuer of `config`.
pub fn mint_token(config: &Path, issuer: &str, subject: &str, scopes: &str) -> Result<String> {
    let out = Command::new(binary())
        .args(["token", "new", "--issuer", issuer, "--sub", subject])
        .args(["--scopes", scopes, "--ttl", "2h", "--config"])
        .arg(config)
        .output()
        .context("running api-shield token new")?;
    if !out.status.success() {
        bail!("token new failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
