//! The daemon's side of the control socket: binds it mode 0600 (refusing to take over a socket
//! a live daemon answers on), accepts only root and the daemon's own user (checked with
//! `SO_PEERCRED` as well as by the file mode), and answers requests.

use std::{
    future::Future,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Weak,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixListener,
    task::JoinHandle,
};

use super::protocol::{Answer, Envelope, Failure, FailureKind, Reply, Request, VERSION};

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlServerError {
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
pub(crate) fn bind(path: &Path) -> Result<UnixListener, ControlServerError> {
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
pub(crate) fn record(runtime_dir: &Path, socket: &Path) {
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
pub(crate) fn forget(runtime_dir: &Path) {
    let _ = std::fs::remove_file(record_path(runtime_dir));
}

/// The recorded control socket, if any.
pub(crate) fn recorded(runtime_dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(record_path(runtime_dir)).ok()?;
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// What answers the requests: the daemon, behind this trait so the socket's code knows nothing
/// of it.
pub(crate) trait ControlHandler: Send + Sync + 'static {
    /// Carries out one request.
    fn answer(&self, request: Request) -> impl Future<Output = Result<Answer, Failure>> + Send;
}

/// Serves requests until aborted. Holds the handler weakly, so stopping it is not delayed.
pub(crate) fn serve<H: ControlHandler>(listener: UnixListener, handler: Weak<H>) -> JoinHandle<()> {
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
            let handler = handler.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match reply(&handler, &line).await {
                        Ok(answer) => Reply::Ok(answer),
                        Err(failure) => Reply::Err(failure),
                    };
                    let mut text =
                        serde_json::to_string(&Envelope::new(reply)).expect("a reply serialises");
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// The answer to one line.
async fn reply<H: ControlHandler>(handler: &Weak<H>, line: &str) -> Result<Answer, Failure> {
    let request: Envelope<Request> = serde_json::from_str(line)
        .map_err(|error| Failure::new(FailureKind::BadRequest, format!("bad request: {error}")))?;
    if request.version != VERSION {
        return Err(Failure::new(
            FailureKind::UnsupportedVersion,
            format!(
                "control protocol version {} is not spoken here (this daemon speaks {VERSION}): use the api-shield CLI of the same version",
                request.version
            ),
        ));
    }
    let Some(handler) = handler.upgrade() else {
        return Err(Failure::new(
            FailureKind::Stopping,
            "the daemon is stopping",
        ));
    };
    handler.answer(request.message).await
}
