//! The daemon's side of the control socket: binds it mode 0600 (refusing to take over a socket
//! a live daemon answers on), accepts only root and the daemon's own user (checked with
//! `SO_PEERCRED` as well as by the file mode), and answers requests.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Weak,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    task::JoinHandle,
};

use super::{Request, Response};
use crate::daemon::Daemon;

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ControlServerError {
    /// Another daemon answers on it.
    #[error("control socket {} is in use by a running daemon; stop it or set [control] socket", path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding failed.
    #[error("control socket {}: cannot listen there", path.display())]
    Bind {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Binds the socket; a stale one (nobody answering) is replaced.
pub fn bind(path: &Path) -> Result<UnixListener, ControlServerError> {
    let bind_error = |source| ControlServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ControlServerError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(bind_error)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(bind_error)?;
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// The file in the runtime directory that says where the daemon's socket is: the CLI's way back
/// to a daemon whose socket moved in a reload, when the config it reads names the new path only
/// after the move (as the config triggering that reload does).
fn record_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("control-socket")
}

/// Records `socket` as the daemon's control socket.
pub fn record(runtime_dir: &Path, socket: &Path) {
    let result = std::fs::create_dir_all(runtime_dir).and_then(|()| {
        std::fs::write(
            record_path(runtime_dir),
            socket.as_os_str().as_encoded_bytes(),
        )
    });
    if let Err(error) = result {
        tracing::warn!(%error, dir = %runtime_dir.display(), "cannot record the control socket's path");
    }
}

/// Forgets the record (at stop).
pub fn forget(runtime_dir: &Path) {
    let _ = std::fs::remove_file(record_path(runtime_dir));
}

/// The recorded control socket, if any.
pub fn recorded(runtime_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(record_path(runtime_dir)).ok()?;
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Serves requests until aborted. Holds the daemon weakly, so stopping it is not delayed.
pub fn serve(listener: UnixListener, daemon: Weak<Daemon>) -> JoinHandle<()> {
    let own_uid = nix::unistd::geteuid().as_raw();
    tokio::spawn(async move {
        let mut errors = crate::accept::AcceptErrors::new("control");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    errors.handle(&error).await;
                    continue;
                }
            };
            let uid = stream.peer_cred().map(|c| c.uid()).ok();
            if !uid.is_some_and(|uid| uid == 0 || uid == own_uid) {
                tracing::warn!(?uid, "control socket: caller refused (root only)");
                continue;
            }
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response = match (serde_json::from_str::<Request>(&line), daemon.upgrade())
                    {
                        (Err(error), _) => Response::error(format!("bad request: {error}")),
                        (Ok(_), None) => Response::error("the daemon is stopping"),
                        (Ok(request), Some(daemon)) => answer(&daemon, &request).await,
                    };
                    let mut text = serde_json::to_string(&response).expect("a response serialises");
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

async fn answer(daemon: &Daemon, request: &Request) -> Response {
    match request {
        Request::Status => Response::ok(daemon.status()),
        Request::Reload => match daemon.reload().await {
            Ok(reloaded) => Response::ok(serde_json::json!({
                "reloaded": true,
                "pending_restart": reloaded.pending_restart,
            })),
            Err(error) => Response::error(crate::telemetry::error_chain(&error)),
        },
        Request::Top => Response::ok(daemon.top()),
        Request::Ban {
            target,
            ttl_secs,
            reason,
            force,
        } => result(daemon.ban(
            target,
            ttl_secs.map(std::time::Duration::from_secs),
            reason,
            *force,
        )),
        Request::Unban { target } => result(daemon.unban(target)),
        Request::Bans => result(daemon.bans()),
        Request::Stats => result(daemon.stats()),
        Request::PendingRestart { config } => result(
            daemon
                .pending_restart_for(config)
                .map(|keys| serde_json::json!({ "pending_restart": keys })),
        ),
    }
}

fn result(answer: anyhow::Result<serde_json::Value>) -> Response {
    match answer {
        Ok(body) => Response::ok(body),
        Err(error) => Response::error(crate::telemetry::error_chain(error.as_ref())),
    }
}
