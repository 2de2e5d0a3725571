//! The CLI's side of the control socket, with errors that say what to do.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Request, Response};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
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
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Sends one request and reads the answer's body.
pub fn ask(path: &Path, request: &Request) -> Result<serde_json::Value, ControlError> {
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
    let mut line = serde_json::to_string(request).expect("a request serialises");
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
    let response: Response = serde_json::from_str(&answer)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    if response.ok {
        Ok(response.body.unwrap_or_default())
    } else {
        Err(ControlError::Refused(
            response.error.unwrap_or_else(|| "refused".to_owned()),
        ))
    }
}
