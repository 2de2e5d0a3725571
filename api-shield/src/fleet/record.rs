//! What the fleet keeps in Redis and says on its channel, as JSON: a ban record per network
//! (reason, the host that made it, when, and its absolute end in Unix milliseconds) and the
//! ban/unban messages. Everything read back is checked like an operator's input before it is
//! trusted: a strict network (no host bits), a printable reason that fits, a host name.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::check_host_name;

/// Longest reason the fleet carries.
const MAX_REASON: usize = api_shield_common::values::BAN_REASON_LEN;

/// One ban, as stored under its network in the fleet's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BanRecord {
    /// Why.
    pub reason: String,
    /// The host that made it.
    pub host: String,
    /// When it was made (Unix ms).
    pub created_ms: u64,
    /// When it ends (Unix ms); absent for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// A message on the fleet's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(super) enum Message {
    /// A ban was made.
    Ban {
        /// Address or network.
        target: String,
        /// The ban.
        #[serde(flatten)]
        record: BanRecord,
    },
    /// A ban was lifted.
    Unban {
        /// Address or network.
        target: String,
        /// The host that lifted it.
        host: String,
    },
}

/// Why an entry read from Redis is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum RecordError {
    /// Not JSON of the right shape.
    #[error("not a fleet record ({0})")]
    Shape(String),
    /// Not an address or network, or one with host bits.
    #[error("`{0}` is not an address or network without host bits")]
    Target(String),
    /// The reason is empty, too long or not printable.
    #[error("the reason is empty, longer than {MAX_REASON} bytes or not printable")]
    Reason,
    /// The host name is not one.
    #[error("{0}")]
    Host(String),
}

/// A network as the fleet writes it: exactly, with no host bits.
pub(super) fn parse_target(text: &str) -> Result<IpNet, RecordError> {
    match crate::config::parse_network(text) {
        Some(Ok(net)) => Ok(net),
        _ => Err(RecordError::Target(text.chars().take(64).collect())),
    }
}

impl BanRecord {
    /// Checks a record read back.
    pub(super) fn check(&self) -> Result<(), RecordError> {
        if self.reason.is_empty()
            || self.reason.len() > MAX_REASON
            || self.reason.chars().any(char::is_control)
        {
            return Err(RecordError::Reason);
        }
        check_host_name(&self.host).map_err(RecordError::Host)
    }

    /// Its end as a time.
    pub(super) fn expires(&self) -> Option<SystemTime> {
        self.expires_ms
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// Whether it has ended by `now`.
    pub(super) fn expired(&self, now: SystemTime) -> bool {
        self.expires().is_some_and(|end| end <= now)
    }
}

/// Parses and checks a stored record.
pub(super) fn parse_record(json: &str) -> Result<BanRecord, RecordError> {
    let record: BanRecord =
        serde_json::from_str(json).map_err(|e| RecordError::Shape(e.to_string()))?;
    record.check()?;
    Ok(record)
}

/// Parses a channel message (its record, if any, unchecked).
pub(super) fn parse_message(json: &str) -> Result<Message, RecordError> {
    serde_json::from_str(json).map_err(|e| RecordError::Shape(e.to_string()))
}

/// Unix milliseconds of a time.
pub(super) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let record = BanRecord {
            reason: "escalation:auth".into(),
            host: "web-1".into(),
            created_ms: 1,
            expires_ms: Some(2),
        };
        let message = Message::Ban {
            target: "192.0.2.7/32".into(),
            record: record.clone(),
        };
        let text = serde_json::to_string(&message).unwrap();
        assert_eq!(parse_message(&text).unwrap(), message);
        assert_eq!(
            parse_record(&serde_json::to_string(&record).unwrap()).unwrap(),
            record
        );
        assert_eq!(parse_target("::/0").unwrap().to_string(), "::/0");
        assert!(matches!(
            parse_target("10.0.0.1/8"),
            Err(RecordError::Target(_))
        ));
        assert!(matches!(
            parse_target("nonsense"),
            Err(RecordError::Target(_))
        ));
        for bad in [
            r#"{"reason":"","host":"a","created_ms":1}"#,
            r#"{"reason":"a\u0001b","host":"a","created_ms":1}"#,
            r#"{"reason":"ok","host":"no spaces","created_ms":1}"#,
            r#"{"reason":"ok","host":"a","created_ms":-1}"#,
            "[]",
        ] {
            assert!(parse_record(bad).is_err(), "{bad}");
        }
    }
}
