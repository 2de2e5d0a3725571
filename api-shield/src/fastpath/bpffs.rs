//! Makes sure the pin directory lives on a BPF filesystem, mounting one at /sys/fs/bpf when the
//! host has none there yet (as systemd, bpfman and Cilium do).

use std::path::Path;

use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};

use super::FastpathError;

const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// Serialises the check-then-mount, so threads of one process never stack two mounts.
static MOUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creates `dir` on a bpffs, mounting the default bpffs first if needed.
pub fn ensure_dir(dir: &Path) -> Result<(), FastpathError> {
    let _guard = MOUNTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let default_mount = Path::new(DEFAULT_MOUNT);
    if dir.starts_with(default_mount) && !is_bpffs(default_mount) {
        tracing::info!(mount = DEFAULT_MOUNT, "mounting a BPF filesystem");
        mount(
            Some("bpf"),
            default_mount,
            Some("bpf"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("mode=0700"),
        )
        .map_err(|errno| FastpathError::Pin {
            path: default_mount.to_path_buf(),
            source: errno.into(),
        })?;
    }
    // Root only, like the control socket: the pinned maps hold the bans and the allow list.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(|source| FastpathError::Pin {
            path: dir.to_path_buf(),
            source,
        })?;
    if !is_bpffs(dir) {
        return Err(FastpathError::Pin {
            path: dir.to_path_buf(),
            source: std::io::Error::other("not on a BPF filesystem (mount -t bpf bpf DIR)"),
        });
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}
