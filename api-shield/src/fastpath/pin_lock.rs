//! One owner per pin directory: the daemon (and `detach`, `uninstall-maps`) hold an exclusive
//! `flock` on the pin directory itself from before they touch anything until they are done, so
//! a second daemon on the same pinned maps and links refuses to start and changes nothing.
//!
//! bpffs holds no regular files, so the lock is taken on the directory; the holder is named
//! from `/proc/locks`, which lists each lock with its process and the locked inode.

use std::{
    fs::File,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

/// Why the pin directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum PinLockError {
    /// Another process holds it.
    #[error("{} is in use by {holder}: one daemon per pin directory; stop that one first (systemctl stop api-shield), or give this one another fastpath.pin_dir", dir.display())]
    Busy {
        /// The pin directory.
        dir: PathBuf,
        /// Who holds it, as far as /proc tells.
        holder: String,
    },
    /// Opening or locking failed.
    #[error("cannot lock the pin directory {}", dir.display())]
    Io {
        /// The pin directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct PinLock {
    _lock: Flock<File>,
    dir: PathBuf,
}

impl PinLock {
    /// Creates `pin_dir` on a bpffs if needed and locks it, without waiting.
    pub fn acquire(pin_dir: &Path) -> Result<PinLock, super::FastpathError> {
        super::bpffs::ensure_dir(pin_dir)?;
        Ok(Self::lock(pin_dir)?)
    }

    fn lock(dir: &Path) -> Result<PinLock, PinLockError> {
        let io = |source| PinLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(PinLock {
                _lock: lock,
                dir: dir.to_path_buf(),
            }),
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => Err(PinLockError::Busy {
                dir: dir.to_path_buf(),
                holder: holder(&file),
            }),
            Err((_, errno)) => Err(io(errno.into())),
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `pid N (command line)` of the process holding a flock on `file`, from /proc/locks.
fn holder(file: &File) -> String {
    let unknown = || "another process".to_owned();
    let Ok(meta) = file.metadata() else {
        return unknown();
    };
    let dev = meta.dev();
    let wanted = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return unknown();
    };
    let own = std::process::id();
    locks
        .lines()
        .filter(|line| line.contains("FLOCK") && !line.contains("->"))
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 7698 00:28:14592 0 EOF"
            let pid: u32 = fields.get(4)?.parse().ok()?;
            (fields.get(5) == Some(&wanted.as_str()) && pid != own).then_some(pid)
        })
        .map_or_else(unknown, |pid| {
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|part| !part.is_empty())
                        .map(String::from_utf8_lossy)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            if command.is_empty() {
                format!("pid {pid}")
            } else {
                format!("pid {pid} ({command})")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        // flock works the same on any directory; bpffs is not needed to test the logic.
        let dir = tempfile::tempdir().unwrap();
        let first = PinLock::lock(dir.path()).unwrap();
        // A lock through another open file description conflicts, even in this process; the
        // holder lookup skips this process's own pid, so it is "another process" here.
        let error = PinLock::lock(dir.path()).unwrap_err();
        assert!(matches!(error, PinLockError::Busy { .. }), "{error}");
        assert!(error.to_string().contains("in use by"), "{error}");
        drop(first);
        PinLock::lock(dir.path()).unwrap();
    }
}
