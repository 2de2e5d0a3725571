//! Accepting connections without spinning: when the process runs out of file descriptors or
//! socket memory, `accept` fails at once for as long as the condition lasts, so the loop backs
//! off briefly (as nginx and hyper's old `AddrIncoming` do) instead of burning a core and the
//! log. Errors that concern one connection only (it was reset before we took it) are skipped.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    net::{TcpListener, TcpStream},
    time::Instant,
};

/// How long to wait before accepting again after a resource error.
const BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per listener in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What one accept loop does with its errors: count them, warn now and then, back off from
/// resource exhaustion.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    listener: String,
    warned: Option<Instant>,
}

impl AcceptErrors {
    /// For the listener called `listener` in logs.
    pub(crate) fn new(listener: impl Into<String>) -> AcceptErrors {
        AcceptErrors {
            listener: listener.into(),
            warned: None,
        }
    }

    /// Handles a failed accept; returns when the loop may accept again.
    pub(crate) async fn handle(&mut self, error: &io::Error) {
        let counter = &crate::telemetry::metrics().connections.accept_errors;
        if !is_resource_exhaustion(error) {
            tracing::debug!(listener = %self.listener, %error, "accept failed");
            counter.with_label_values(&["connection"]).inc();
            return;
        }
        counter.with_label_values(&["resources"]).inc();
        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                listener = %self.listener,
                %error,
                "cannot accept connections: out of resources; backing off (see \
                 proxy.max_connections and the open-file limit)"
            );
            self.warned = Some(Instant::now());
        }
        tokio::time::sleep(BACKOFF).await;
    }
}

/// The next connection, in canonical form (IPv4 clients of a dual-stack socket arrive
/// IPv4-mapped: they are compared as IPv4).
pub(crate) async fn next(
    listener: &TcpListener,
    errors: &mut AcceptErrors,
) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                return (
                    stream,
                    SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                );
            }
            Err(error) => errors.handle(&error).await,
        }
    }
}

/// Out of file descriptors or memory: retrying at once would fail again.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(errno) if [
            nix::errno::Errno::EMFILE as i32,
            nix::errno::Errno::ENFILE as i32,
            nix::errno::Errno::ENOBUFS as i32,
            nix::errno::Errno::ENOMEM as i32,
        ]
        .contains(&errno)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_and_memory_exhaustion_back_off_and_per_connection_errors_do_not() {
        for errno in [nix::errno::Errno::EMFILE, nix::errno::Errno::ENFILE] {
            assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
                errno as i32
            )));
        }
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            nix::errno::Errno::ECONNABORTED as i32
        )));
        assert!(!is_resource_exhaustion(&io::Error::other("x")));
    }
}
