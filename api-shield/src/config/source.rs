//! Where a config came from: its file and text, kept so that problems found after parsing
//! (policy files that do not load, keys that do not parse) still name file, line and key, and
//! so that relative paths in it resolve against its directory.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{error::Location, locate::locate, validate::Problem, ConfigError};

/// The file and text of a config.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The file (or `<input>`).
    pub file: PathBuf,
    /// Its text.
    pub text: Arc<str>,
}

impl Source {
    /// The error for `problem`, located in this text.
    pub fn error(&self, problem: Problem) -> ConfigError {
        let position = locate(&self.text, &problem.key);
        ConfigError::Invalid {
            location: Location {
                file: self.file.clone(),
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
            },
            key: problem.key,
            message: problem.message,
        }
    }

    /// `path` as written in the config, resolved against the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match self.file.parent() {
            Some(dir) => dir.join(path),
            None => path.to_path_buf(),
        }
    }
}
