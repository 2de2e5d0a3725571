//! Taking the fast path off a host while no daemon runs: `detach` unpins the links that keep
//! the program attached (bans and counters stay pinned), `uninstall_maps` also removes every
//! pinned map of api-shield's layouts. Both hold the pin directory's lock, so a daemon starting
//! meanwhile waits its turn instead of finding half of its state gone; `ip link set dev IF xdp
//! off` cannot do this, since the kernel refuses to replace a program held by a BPF link.

use std::path::{Path, PathBuf};

use super::{pin_lock::PinLock, program::links_dir, FastpathError, RuntimeStatus};

/// What `detach` or `uninstall_maps` did.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Removed {
    /// Interfaces the program was detached from.
    pub detached: Vec<String>,
    /// Layout directories removed with their maps.
    pub removed_dirs: Vec<PathBuf>,
}

/// The pinned links, by interface name.
fn links(pin_dir: &Path) -> Result<Vec<(String, PathBuf)>, FastpathError> {
    let dir = links_dir(pin_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(FastpathError::Pin { path: dir, source }),
    };
    let mut links = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| FastpathError::Pin {
            path: dir.clone(),
            source,
        })?;
        links.push((
            entry.file_name().to_string_lossy().into_owned(),
            entry.path(),
        ));
    }
    links.sort();
    Ok(links)
}

/// Locks an existing pin directory; `None` when there is none (nothing to do).
fn lock_existing(pin_dir: &Path) -> Result<Option<PinLock>, FastpathError> {
    match pin_dir.try_exists() {
        Ok(false) => Ok(None),
        Ok(true) => PinLock::acquire(pin_dir).map(Some),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(FastpathError::PinsNotReadable {
                dir: pin_dir.to_path_buf(),
            })
        }
        Err(source) => Err(FastpathError::Pin {
            path: pin_dir.to_path_buf(),
            source,
        }),
    }
}

fn detach_locked(
    pin_dir: &Path,
    runtime_dir: &Path,
    only: &[String],
) -> Result<Vec<String>, FastpathError> {
    let mut detached = Vec::new();
    for (interface, pin) in links(pin_dir)? {
        if !only.is_empty() && !only.contains(&interface) {
            continue;
        }
        std::fs::remove_file(&pin).map_err(|source| FastpathError::Pin { path: pin, source })?;
        tracing::info!(%interface, "detached");
        detached.push(interface);
    }
    if let Some(mut status) = RuntimeStatus::read(runtime_dir) {
        status
            .interfaces
            .retain(|i| !only.is_empty() && !detached.contains(&i.name));
        if status.interfaces.is_empty() {
            RuntimeStatus::remove(runtime_dir);
        } else {
            status.write(runtime_dir)?;
        }
    }
    Ok(detached)
}

/// Detaches the program from `only` (every interface when empty), keeping bans and counters.
pub fn detach(
    pin_dir: &Path,
    runtime_dir: &Path,
    only: &[String],
) -> Result<Removed, FastpathError> {
    let Some(_lock) = lock_existing(pin_dir)? else {
        return Ok(Removed::default());
    };
    Ok(Removed {
        detached: detach_locked(pin_dir, runtime_dir, only)?,
        removed_dirs: Vec::new(),
    })
}

/// Detaches everywhere and removes every pinned map and link of api-shield under `pin_dir`
/// (the `v<N>` layout directories; nothing else there is touched), then `pin_dir` if empty.
pub fn uninstall_maps(pin_dir: &Path, runtime_dir: &Path) -> Result<Removed, FastpathError> {
    let Some(lock) = lock_existing(pin_dir)? else {
        return Ok(Removed::default());
    };
    let detached = detach_locked(pin_dir, runtime_dir, &[])?;
    RuntimeStatus::remove(runtime_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FastpathError::Pin { path, source }
    };
    let mut removed_dirs = Vec::new();
    for entry in std::fs::read_dir(pin_dir).map_err(io(pin_dir))? {
        let entry = entry.map_err(io(pin_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_layout = name
            .strip_prefix('v')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_layout && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            removed_dirs.push(entry.path());
        }
    }
    drop(lock);
    // Only when nothing else lives there; a failure means something does.
    let _ = std::fs::remove_dir(pin_dir);
    Ok(Removed {
        detached,
        removed_dirs,
    })
}
