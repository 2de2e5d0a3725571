//! The `[fleet]` table: several shields sharing bans through Redis. Off unless the table is
//! there; typed when parsed, so a bad URL, an inline password or an out-of-range timeout is an
//! error at its key and line. The password is named (a file or an environment variable), never
//! written in the config; `config::check_host` reads it.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Longest host name a fleet ban carries: it is kept with the ban's reason in the kernel map's
/// 48 bytes, so `api-shield bans` can say where a ban came from even with no daemon running.
pub const MAX_HOST_LEN: usize = 20;

/// Bounds of `fleet.timeout`.
const TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(10);

/// The `[fleet]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawFleetConfig")]
pub struct FleetConfig {
    /// Redis servers, tried in order at each (re)connect: `redis://host:port[/db]` or
    /// `rediss://` (TLS, validated against `ca_file` or the system's roots).
    pub redis: Vec<String>,
    /// The fleet's name: every key and channel is under it, so fleets can share one Redis.
    pub name: String,
    /// This host's name in the fleet (who made a ban); by default the system's host name.
    pub host: Option<String>,
    /// ACL user.
    pub username: Option<String>,
    /// Where the password is, if the server needs one.
    pub password: Option<Secret>,
    /// CA certificates (PEM) for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for any one Redis command; past it the host counts Redis as gone.
    pub timeout: Duration,
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Fleet bans longer than this (or ending further out) are refused when read.
    pub max_ban_ttl: Duration,
}

/// A secret named by the config, read when the daemon starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// A file readable by root only (mode 0600 or stricter); its first line.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleetConfig {
    redis: Urls,
    name: String,
    host: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    max_ban_ttl: Option<Duration>,
}

/// One URL or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

/// Whether `name` is fit for a fleet or host name: letters, digits, `.`, `_` and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a host name for the fleet; the error says what is wrong.
pub fn check_host_name(host: &str) -> Result<(), String> {
    if !is_name(host) || host.len() > MAX_HOST_LEN {
        return Err(format!(
            "`{host}` is not a fleet host name: 1 to {MAX_HOST_LEN} letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    use redis::IntoConnectionInfo as _;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(format!(
            "fleet.redis: `{url}` must start with redis:// or rediss://"
        ));
    }
    let info = url
        .into_connection_info()
        .map_err(|e| format!("fleet.redis: `{url}` is not a Redis URL ({e})"))?;
    if info.redis_settings().password().is_some() || info.redis_settings().username().is_some() {
        return Err(
            "fleet.redis: credentials do not go in the URL; use fleet.username and \
             fleet.password_file or fleet.password_env"
                .to_owned(),
        );
    }
    Ok(())
}

impl TryFrom<RawFleetConfig> for FleetConfig {
    type Error = String;

    fn try_from(raw: RawFleetConfig) -> Result<Self, String> {
        let redis = match raw.redis {
            Urls::One(url) => vec![url],
            Urls::Many(urls) => urls,
        };
        if redis.is_empty() {
            return Err("fleet.redis: name at least one Redis URL".to_owned());
        }
        for url in &redis {
            check_url(url)?;
        }
        if !is_name(&raw.name) || raw.name.len() > 64 {
            return Err(format!(
                "fleet.name: `{}` must be 1 to 64 letters, digits, `.`, `_` or `-`",
                raw.name
            ));
        }
        if let Some(host) = &raw.host {
            check_host_name(host).map_err(|e| format!("fleet.host: {e}"))?;
        }
        let password = match (raw.password_file, raw.password_env) {
            (Some(_), Some(_)) => {
                return Err(
                    "fleet.password_env: give the password in a file or a variable, not both"
                        .to_owned(),
                )
            }
            (Some(path), None) if !path.is_absolute() => {
                return Err(format!(
                    "fleet.password_file: `{}` must be an absolute path",
                    path.display()
                ))
            }
            (Some(path), None) => Some(Secret::File(path)),
            (None, Some(name)) if name.is_empty() => {
                return Err("fleet.password_env: name a variable".to_owned())
            }
            (None, Some(name)) => Some(Secret::Env(name)),
            (None, None) => None,
        };
        let timeout = raw.timeout.unwrap_or(Duration::from_millis(250));
        if !TIMEOUTS.contains(&timeout) {
            return Err("fleet.timeout: must be between 10ms and 10s".to_owned());
        }
        let connect_timeout = raw.connect_timeout.unwrap_or(Duration::from_secs(1));
        if !TIMEOUTS.contains(&connect_timeout) {
            return Err("fleet.connect_timeout: must be between 10ms and 10s".to_owned());
        }
        let max_ban_ttl = raw.max_ban_ttl.unwrap_or(Duration::from_hours(24 * 7));
        if max_ban_ttl.is_zero() {
            return Err("fleet.max_ban_ttl: must be more than zero".to_owned());
        }
        Ok(FleetConfig {
            redis,
            name: raw.name,
            host: raw.host,
            username: raw.username,
            password,
            ca_file: raw.ca_file,
            timeout,
            connect_timeout,
            max_ban_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, ConfigError};

    fn error(text: &str) -> ConfigError {
        parse(text, std::path::Path::new("t.toml")).unwrap_err()
    }

    #[test]
    fn the_fleet_table_is_typed_when_parsed() {
        let config = parse(
            "[fleet]\nredis = \"redis://10.0.0.5:6379\"\nname = \"eu-1\"\nhost = \"web-3\"\npassword_env = \"REDIS_PASSWORD\"\ntimeout = \"100ms\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let fleet = config.fleet.unwrap();
        assert_eq!(fleet.redis, ["redis://10.0.0.5:6379"]);
        assert_eq!(
            fleet.password,
            Some(super::Secret::Env("REDIS_PASSWORD".into()))
        );
        assert_eq!(fleet.timeout, std::time::Duration::from_millis(100));
        assert!(parse("", std::path::Path::new("t.toml"))
            .unwrap()
            .fleet
            .is_none());
    }

    #[test]
    fn bad_fleet_settings_name_their_key_and_line() {
        for (text, needle) in [
            ("[fleet]\nredis = \"http://x\"\nname = \"a\"\n", "fleet.redis"),
            (
                "[fleet]\nredis = \"redis://:secret@x:6379\"\nname = \"a\"\n",
                "credentials do not go in the URL",
            ),
            ("[fleet]\nredis = []\nname = \"a\"\n", "at least one"),
            ("[fleet]\nredis = \"redis://x\"\nname = \"a b\"\n", "fleet.name"),
            (
                "[fleet]\nredis = \"redis://x\"\nname = \"a\"\nhost = \"a-very-long-host-name-indeed\"\n",
                "fleet.host",
            ),
            (
                "[fleet]\nredis = \"redis://x\"\nname = \"a\"\npassword_file = \"/p\"\npassword_env = \"P\"\n",
                "not both",
            ),
            (
                "[fleet]\nredis = \"redis://x\"\nname = \"a\"\ntimeout = \"1m\"\n",
                "fleet.timeout",
            ),
            ("[fleet]\nredis = \"redis://x\"\nname = \"a\"\npassword = \"x\"\n", "password"),
        ] {
            let error = error(text);
            let message = error.to_string();
            assert!(message.contains(needle), "{text}: {message}");
            assert!(message.starts_with("t.toml:"), "{message}");
            assert!(error.line().is_some(), "{message}");
        }
    }
}
