//! Options shared by the subcommands that work on the kernel maps: which config (and so which
//! pin directory and control socket) to use. With a daemon running they go through its control
//! socket; without one, straight to the pinned maps.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{
    config::{self, FastpathConfig},
    control::{client::ControlError, Answer, Request},
    fastpath::{layout_dir, PinnedMaps},
};

/// The config read when `--config` is not given, if it exists.
pub(super) const DEFAULT_CONFIG: &str = "/etc/api-shield/api-shield.toml";

/// The config `--config` names, else the installed one if present, else the defaults.
pub(super) fn load_config(given: Option<&Path>) -> Result<config::Config> {
    let path = given.map(Path::to_path_buf).or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG))
    });
    Ok(match path {
        Some(path) => config::load(&path)?,
        None => config::Config::default(),
    })
}

/// Where the daemon's state is.
#[derive(Debug, clap::Args)]
pub(super) struct MapsArgs {
    /// Config file naming the pin and runtime directories [default: /etc/api-shield/api-shield.toml if present].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// bpffs directory of the pinned maps (overrides the config).
    #[arg(long)]
    pub pin_dir: Option<PathBuf>,
    /// Directory of the daemon's status file (overrides the config).
    #[arg(long)]
    pub runtime_dir: Option<PathBuf>,
}

impl MapsArgs {
    /// The fast-path settings these options point at.
    pub(super) fn fastpath(&self) -> Result<FastpathConfig> {
        let mut fastpath = load_config(self.config.as_deref())?.fastpath;
        if let Some(dir) = &self.pin_dir {
            fastpath.pin_dir.clone_from(dir);
        }
        if let Some(dir) = &self.runtime_dir {
            fastpath.runtime_dir.clone_from(dir);
        }
        Ok(fastpath)
    }

    /// Asks the running daemon over its control socket, unless `--pin-dir` or `--runtime-dir`
    /// point elsewhere. `None` when no daemon runs (the caller then uses the pinned maps).
    pub(super) fn via_daemon(&self, request: &Request) -> Result<Option<Answer>> {
        if self.pin_dir.is_some() || self.runtime_dir.is_some() {
            return Ok(None);
        }
        let config = load_config(self.config.as_deref())?;
        match super::control_args::ask_first(&super::control_args::candidates(&config), request) {
            Ok(answer) => Ok(Some(answer)),
            Err(ControlError::NotRunning { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Opens the pinned maps.
    pub(super) fn open(&self) -> Result<(FastpathConfig, PinnedMaps)> {
        let fastpath = self.fastpath()?;
        let maps = PinnedMaps::open(&layout_dir(&fastpath.pin_dir))?;
        Ok((fastpath, maps))
    }
}
