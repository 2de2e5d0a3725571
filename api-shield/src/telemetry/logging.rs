//! Structured logs on stderr: human text or one JSON object per line. `RUST_LOG` filters.
//!
//! A log line that cannot be written (disk full under a file redirect, a closed pipe) is
//! dropped and counted in `api_shield_log_write_errors_total`; it never stops or slows the
//! daemon (the library's own fallback, an `eprintln!` of the failure, would panic there).

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::{fmt, EnvFilter};

/// Log line format: of the daemon's logs (`--log-format`) and of the access log
/// (`access_log.format`, by default the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (and the bridge from the `log` crate, which aya-log uses).
pub fn init_logging(format: LogFormat) {
    // rustls warns once per handshake about what a client sent (an IP address as SNI, say):
    // lines any client can multiply, so only its errors are shown unless RUST_LOG asks.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    // Colour codes only for a person at a terminal: a file or the journal gets plain text.
    let builder = fmt()
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = result {
        let _ = writeln!(
            io::stderr(),
            "warning: logging already initialised: {error}"
        );
    }
}

/// Stderr that reports every write as done, counting the ones that failed.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().write_all(buf).is_err() {
            crate::telemetry::metrics().logs.write_errors.inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}
