//! The runtime status file: which interfaces the daemon attached to and in which mode, so
//! `stats` can show it whether or not the daemon is running.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::FastpathError;

/// One attached interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// Interface name.
    pub name: String,
    /// `driver` or `generic`.
    pub mode: String,
}

/// What the daemon last reported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// Daemon process id.
    pub pid: u32,
    /// Attached interfaces.
    pub interfaces: Vec<InterfaceStatus>,
    /// Dry run on.
    pub dry_run: bool,
    /// The program stays attached after the daemon stops.
    pub keep_attached: bool,
}

const FILE: &str = "status.json";

impl RuntimeStatus {
    /// Path of the file in a runtime directory.
    pub fn path(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join(FILE)
    }

    /// Writes the file (atomically, by rename).
    pub fn write(&self, runtime_dir: &Path) -> Result<(), FastpathError> {
        let path = Self::path(runtime_dir);
        let err = |source| FastpathError::Status {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(runtime_dir).map_err(err)?;
        let tmp = runtime_dir.join(format!(".{FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("status serialises");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// Reads the file, `None` when there is none.
    pub fn read(runtime_dir: &Path) -> Option<RuntimeStatus> {
        let text = std::fs::read_to_string(Self::path(runtime_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Removes the file.
    pub fn remove(runtime_dir: &Path) {
        let _ = std::fs::remove_file(Self::path(runtime_dir));
    }

    /// The interfaces it lists whose pinned link is still there under `pin_dir`: what is
    /// attached now, whatever happened since the file was written (a `detach`, a pin removed
    /// by hand, maps removed).
    pub fn still_attached(&self, pin_dir: &Path) -> Vec<InterfaceStatus> {
        let links = super::program::links_dir(pin_dir);
        self.interfaces
            .iter()
            .filter(|i| links.join(&i.name).exists())
            .cloned()
            .collect()
    }

    /// Whether the process that wrote it is still alive.
    pub fn daemon_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}
