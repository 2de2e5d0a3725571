//! The CLI's side of the control socket, with errors that say what to do.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::protocol::{Answer, Envelope, Failure, FailureKind, Reply, Request, VERSION};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// Nothing listens there.
    #[error("the daemon is not running (no control socket at {})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The caller may not use the socket.
    #[error("permission denied on {}: the control socket is root-only; run this as root", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// Talking to it failed.
    #[error("control socket {}: cannot talk to the daemon", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered in another protocol version.
    #[error("control socket {}: the daemon speaks control protocol version {theirs}, this CLI {VERSION}; use the CLI of the running daemon's version, or restart the daemon", path.display())]
    Version {
        /// The socket path.
        path: PathBuf,
        /// The daemon's version (0: from before versions).
        theirs: u32,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// The daemon could not take the request (it is stopping, or speaks another version).
    #[error("{0}")]
    Failed(Failure),
    /// The daemon answered with something other than what was asked for.
    #[error("the daemon answered `{0}` with something else")]
    Unexpected(&'static str),
}

impl From<Failure> for ControlError {
    fn from(failure: Failure) -> ControlError {
        match failure.kind {
            FailureKind::Refused => ControlError::Refused(failure.message),
            _ => ControlError::Failed(failure),
        }
    }
}

/// Sends one request and reads the answer.
pub(crate) fn ask(path: &Path, request: &Request) -> Result<Answer, ControlError> {
    let io = |source: std::io::Error| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ControlError::NotRunning {
                path: path.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
            path: path.to_path_buf(),
        },
        _ => io(source),
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line = serde_json::to_string(&Envelope::new(request)).expect("a request serialises");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        // The daemon closes without a word on callers it does not accept.
        return Err(ControlError::PermissionDenied {
            path: path.to_path_buf(),
        });
    }
    let invalid = |e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let value: serde_json::Value = serde_json::from_str(&answer).map_err(invalid)?;
    let version = value["version"].as_u64().unwrap_or(0);
    if version != u64::from(VERSION) {
        return Err(ControlError::Version {
            path: path.to_path_buf(),
            theirs: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    let reply: Envelope<Reply> = serde_json::from_value(value).map_err(invalid)?;
    match reply.message {
        Reply::Ok(answer) => Ok(answer),
        Reply::Err(failure) => Err(failure.into()),
    }
}
