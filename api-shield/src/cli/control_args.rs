//! Options of the subcommands that talk to the running daemon: where its control socket is.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::maps_args::DEFAULT_CONFIG;
use crate::config;

/// Where the daemon listens.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Config file naming the control socket [default: /etc/api-shield/api-shield.toml if present].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The control socket (overrides the config).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl ControlArgs {
    /// The socket path these options point at.
    pub fn socket(&self) -> Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let path = self.config.clone().or_else(|| {
            Path::new(DEFAULT_CONFIG)
                .exists()
                .then(|| PathBuf::from(DEFAULT_CONFIG))
        });
        Ok(match path {
            Some(path) => config::load(&path)?.control_socket(),
            None => config::Config::default().control_socket(),
        })
    }
}
