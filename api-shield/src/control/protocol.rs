//! What goes over the control socket.

use serde::{Deserialize, Serialize};

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Version, uptime, interfaces, listeners, routes, bans, counters.
    Status,
    /// Read the config file again and apply it.
    Reload,
    /// Sources being dropped and requests per route, for `top`.
    Top,
    /// Ban an address or network at the NIC.
    Ban {
        /// Address or CIDR.
        target: String,
        /// Seconds, or none for a ban until unbanned.
        ttl_secs: Option<u64>,
        /// Why.
        reason: String,
        /// Past the guard rails' minimum prefix (an operator's explicit choice).
        #[serde(default)]
        force: bool,
    },
    /// Lift a ban.
    Unban {
        /// Address or CIDR, as banned.
        target: String,
    },
    /// The bans in force.
    Bans,
    /// The XDP counters and attachments.
    Stats,
    /// The restart-only settings in which a config file differs from the running daemon.
    PendingRestart {
        /// The config file to compare.
        config: std::path::PathBuf,
    },
}

/// The daemon's answer: `ok` with a body, or an error message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

impl Response {
    /// A success.
    pub fn ok(body: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            body: Some(body),
        }
    }

    /// A failure.
    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            body: None,
        }
    }
}
