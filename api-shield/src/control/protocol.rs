//! What goes over the control socket, typed on both ends: one [`Envelope`] of a [`Request`] per
//! line from the CLI, one [`Envelope`] of a [`Reply`] per line back. Every message carries the
//! protocol [`VERSION`]; a daemon refuses a request of another version with
//! [`FailureKind::UnsupportedVersion`] rather than guess at it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{
    fastpath::{Ban, CounterRow, GuardedBan, InterfaceStatus},
    telemetry::drops::DropRow,
};

/// The protocol version this build speaks. Raise it when a message changes incompatibly.
pub(crate) const VERSION: u32 = 1;

/// A message with the protocol version it was written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    /// [`VERSION`] of the writer (0 when absent: a writer from before versions).
    #[serde(default)]
    pub version: u32,
    /// The message.
    #[serde(flatten)]
    pub message: T,
}

impl<T> Envelope<T> {
    /// `message` in this build's version.
    pub(crate) fn new(message: T) -> Envelope<T> {
        Envelope {
            version: VERSION,
            message,
        }
    }
}

/// A request from the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum Request {
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
        /// On this host only, even in a fleet.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// Lift a ban.
    Unban {
        /// Address or CIDR, as banned.
        target: String,
        /// On this host only, even in a fleet.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        local: bool,
    },
    /// The bans in force.
    Bans,
    /// The XDP counters and attachments.
    Stats,
    /// The restart-only settings in which a config file differs from the running daemon.
    PendingRestart {
        /// The config file to compare.
        config: PathBuf,
    },
}

/// The daemon's answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reply {
    /// Done; what came of it.
    Ok(Answer),
    /// Not done; why.
    Err(Failure),
}

/// What a request that succeeded returns, one variant per [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub(crate) enum Answer {
    /// To [`Request::Status`].
    Status(Box<StatusReport>),
    /// To [`Request::Reload`].
    Reloaded(Reloaded),
    /// To [`Request::Top`].
    Top(TopReport),
    /// To [`Request::Ban`].
    Banned(GuardedBan),
    /// To [`Request::Unban`].
    Unbanned {
        /// The network whose ban was lifted.
        target: String,
    },
    /// To [`Request::Bans`].
    Bans {
        /// The bans in force.
        bans: Vec<Ban>,
    },
    /// To [`Request::Stats`].
    Stats(StatsReport),
    /// To [`Request::PendingRestart`].
    PendingRestart(Reloaded),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// For the operator: what is wrong and, where it helps, what to do.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The daemon refused the request (bad input, guard rails, a config error).
    pub(crate) fn refused(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Refused, message)
    }
}

/// The kinds of [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureKind {
    /// The line was not a request this daemon knows.
    BadRequest,
    /// The request was written in another protocol version.
    UnsupportedVersion,
    /// The daemon is stopping.
    Stopping,
    /// The request was understood and refused.
    Refused,
}

/// What `api-shield status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatusReport {
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Its config file.
    pub config: PathBuf,
    /// Where the program is attached.
    pub interfaces: Vec<InterfaceStatus>,
    /// Whether the program only counts (drops nothing).
    pub dry_run: bool,
    /// The proxy's listeners.
    pub listening: Vec<Listening>,
    /// The admin listener's address.
    pub admin: Option<String>,
    /// Route names, in order.
    pub routes: Vec<String>,
    /// Bans in force; `None` with the fast path disabled.
    pub active_bans: Option<usize>,
    /// The program's counters.
    pub counters: Vec<CounterRow>,
    /// Settings changed in the config that wait for a restart.
    pub pending_restart: Vec<String>,
    /// The fleet link, when the config has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// The fleet link, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FleetStatus {
    /// The fleet's name.
    pub name: String,
    /// This host's name in it.
    pub host: String,
    /// Whether Redis answers now.
    pub connected: bool,
    /// The Redis URL of the last session.
    pub redis: Option<String>,
    /// Hosts heard from in the last 10 seconds (this one included).
    pub peers: Vec<String>,
    /// When the bans were last resynced in full (RFC 3339).
    pub last_resync: Option<String>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listening {
    /// Its name (`listener-0`, `NAME-redirect`).
    pub name: String,
    /// Where it listens.
    pub addr: String,
}

/// What a reload applied (and what `check-config` would leave for a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reloaded {
    /// Keys changed in the file that take effect at the next restart only.
    pub pending_restart: Vec<String>,
}

/// What `api-shield top` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TopReport {
    /// The sources with the most drop-start events.
    pub drops: Vec<DropRow>,
    /// Requests per route since the start.
    pub routes: Vec<RouteRequests>,
}

/// Requests a route served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteRequests {
    /// The route (`none` for requests no route took).
    pub route: String,
    /// Requests so far.
    pub requests: u64,
}

/// What `api-shield stats` shows (from the daemon or, without one, from the pinned maps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatsReport {
    /// Whether a daemon runs on these maps.
    pub daemon_running: bool,
    /// Where the program is attached.
    pub interfaces: Vec<InterfaceStatus>,
    /// Whether the program only counts.
    pub dry_run: bool,
    /// Bans in force.
    pub active_bans: usize,
    /// The program's counters.
    pub counters: Vec<CounterRow>,
    /// Drops per deny list (`deny`, then the blocklists).
    #[serde(default)]
    pub lists: Vec<crate::fastpath::ListCounterRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_its_version_and_round_trips() {
        let line = serde_json::to_string(&Envelope::new(Request::Unban {
            target: "10.0.0.0/24".to_owned(),
            local: false,
        }))
        .unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"command":"unban","target":"10.0.0.0/24"}"#
        );
        let back: Envelope<Request> = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back,
            Envelope::new(Request::Unban {
                target: "10.0.0.0/24".to_owned(),
                local: false,
            })
        );
    }

    #[test]
    fn a_request_without_a_version_reads_as_version_zero() {
        let old: Envelope<Request> = serde_json::from_str(r#"{"command":"status"}"#).unwrap();
        assert_eq!(old.version, 0);
        assert_eq!(old.message, Request::Status);
    }

    #[test]
    fn replies_round_trip() {
        let failure = Envelope::new(Reply::Err(Failure::refused("no ban for 10.0.0.1/32")));
        let line = serde_json::to_string(&failure).unwrap();
        assert_eq!(
            line,
            r#"{"version":1,"err":{"kind":"refused","message":"no ban for 10.0.0.1/32"}}"#
        );
        let answer = Envelope::new(Reply::Ok(Answer::Reloaded(Reloaded {
            pending_restart: vec!["proxy.workers".to_owned()],
        })));
        let line = serde_json::to_string(&answer).unwrap();
        let back: Envelope<Reply> = serde_json::from_str(&line).unwrap();
        match back.message {
            Reply::Ok(Answer::Reloaded(reloaded)) => {
                assert_eq!(reloaded.pending_restart, ["proxy.workers"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
