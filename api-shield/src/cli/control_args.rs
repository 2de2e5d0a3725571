//! Options of the subcommands that talk to the running daemon: where its control socket is.

use std::path::PathBuf;

use anyhow::Result;

use super::maps_args::load_config;
use crate::{
    config,
    control::{
        client::{ask, ControlError},
        Answer, Request,
    },
};

/// Where the daemon listens.
#[derive(Debug, clap::Args)]
pub(super) struct ControlArgs {
    /// Config file naming the control socket [default: /etc/api-shield/api-shield.toml if present].
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The control socket (overrides the config).
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

impl ControlArgs {
    /// The socket path these options point at.
    pub(super) fn socket(&self) -> Result<PathBuf> {
        Ok(self.candidates()?.remove(0))
    }

    /// The socket these options point at, then the one the daemon recorded in the config's
    /// runtime directory (where a daemon whose socket a reload is about to move still listens).
    fn candidates(&self) -> Result<Vec<PathBuf>> {
        if let Some(socket) = &self.socket {
            return Ok(vec![socket.clone()]);
        }
        Ok(candidates(&load_config(self.config.as_deref())?))
    }

    /// Asks the daemon at the first candidate socket that answers.
    pub(super) fn ask(&self, request: &Request) -> Result<Answer, ControlError> {
        let candidates = self
            .candidates()
            .map_err(|e| ControlError::Refused(format!("{e:#}")))?;
        ask_first(&candidates, request)
    }
}

/// The configured control socket, then the one recorded in the runtime directory.
pub(super) fn candidates(config: &config::Config) -> Vec<PathBuf> {
    let mut list = vec![config.control_socket()];
    if let Some(recorded) = crate::control::server::recorded(&config.fastpath.runtime_dir) {
        if !list.contains(&recorded) {
            list.push(recorded);
        }
    }
    list
}

/// Asks at each socket in turn until one has a daemon behind it.
pub(super) fn ask_first(sockets: &[PathBuf], request: &Request) -> Result<Answer, ControlError> {
    let mut last = None;
    for socket in sockets {
        match ask(socket, request) {
            Err(error @ ControlError::NotRunning { .. }) => last = Some(error),
            other => return other,
        }
    }
    Err(last.expect("at least one candidate"))
}
