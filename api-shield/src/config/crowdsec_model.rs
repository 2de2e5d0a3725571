//! The `[crowdsec]` table: this daemon as a CrowdSec bouncer, pulling the decisions of a
//! CrowdSec Local API (LAPI) into the kernel's ban map. Off unless the table is there; typed
//! when parsed, so a bad URL, an inline key or an out-of-range interval is an error at its key
//! and line. The bouncer key is named (a file or an environment variable), never written in
//! the config; `config::crowdsec_secrets` reads it (and the reporting machine's password).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::Secret;

/// Bounds of `crowdsec.poll_interval`.
const INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_mins(5);

/// Bounds of `crowdsec.timeout`.
const TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_mins(1);

/// The `[crowdsec]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCrowdsecConfig")]
pub struct CrowdsecConfig {
    /// The LAPI's base URL: `https://…`, or `http://` to a loopback address.
    pub lapi_url: String,
    /// Where the bouncer key (`cscli bouncers add`) is.
    pub api_key: Secret,
    /// CA certificates (PEM) for an `https://` LAPI; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Time between pulls of the decision stream.
    pub poll_interval: Duration,
    /// Longest wait for one pull.
    pub timeout: Duration,
    /// Decision types applied (as CrowdSec names them: `ban`); others are counted and
    /// ignored.
    pub types: Vec<String>,
    /// Decision scopes applied: `ip` and `range` (the ones a ban map can hold).
    pub scopes: Vec<String>,
    /// Escalation bans reported to the LAPI as alerts with a decision (`report = true`), as
    /// this machine.
    pub report: Option<ReportAs>,
}

/// The machine escalation bans are reported as (`cscli machines add NAME --password ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAs {
    /// The machine's name.
    pub machine_id: String,
    /// Where its password is.
    pub password: Secret,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrowdsecConfig {
    lapi_url: String,
    api_key_file: Option<PathBuf>,
    api_key_env: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    poll_interval: Option<Duration>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    timeout: Option<Duration>,
    types: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    report: bool,
    machine_id: Option<String>,
    machine_password_file: Option<PathBuf>,
    machine_password_env: Option<String>,
}

/// A secret named by a `*_file` (absolute) or a `*_env` key, not both.
fn secret(
    file: Option<PathBuf>,
    env: Option<String>,
    file_key: &str,
    env_key: &str,
) -> Result<Option<Secret>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!(
            "{env_key}: give it in a file or a variable, not both"
        )),
        (Some(path), None) if !path.is_absolute() => Err(format!(
            "{file_key}: `{}` must be an absolute path",
            path.display()
        )),
        (Some(path), None) => Ok(Some(Secret::File(path))),
        (None, Some(name)) if name.is_empty() => Err(format!("{env_key}: name a variable")),
        (None, Some(name)) => Ok(Some(Secret::Env(name))),
        (None, None) => Ok(None),
    }
}

/// Whether `url` may carry a bouncer key: https, or http to a loopback address.
fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("crowdsec.lapi_url: `{url}` is not a URL"))?;
    let host = uri
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if loopback => Ok(()),
        _ => Err(format!(
            "crowdsec.lapi_url: `{url}` must be https:// (http:// only to a loopback address: \
             the bouncer key travels with every pull)"
        )),
    }
}

impl TryFrom<RawCrowdsecConfig> for CrowdsecConfig {
    type Error = String;

    fn try_from(raw: RawCrowdsecConfig) -> Result<Self, String> {
        check_url(&raw.lapi_url)?;
        let api_key = secret(
            raw.api_key_file,
            raw.api_key_env,
            "crowdsec.api_key_file",
            "crowdsec.api_key_env",
        )?
        .ok_or_else(|| {
            "crowdsec.api_key_file: name the bouncer key's file (or api_key_env); \
             `cscli bouncers add NAME -o raw` makes one"
                .to_owned()
        })?;
        let machine_password = secret(
            raw.machine_password_file,
            raw.machine_password_env,
            "crowdsec.machine_password_file",
            "crowdsec.machine_password_env",
        )?;
        let report =
            match (raw.report, raw.machine_id, machine_password) {
                (true, Some(machine_id), Some(password)) if !machine_id.is_empty() => {
                    Some(ReportAs {
                        machine_id,
                        password,
                    })
                }
                (true, _, _) => return Err(
                    "crowdsec.report: reporting needs machine_id and machine_password_file (or \
                     machine_password_env): `cscli machines add NAME --password ...`"
                        .to_owned(),
                ),
                (false, None, None) => None,
                (false, _, _) => return Err(
                    "crowdsec.machine_id: the machine is only used to report; set report = true"
                        .to_owned(),
                ),
            };
        let poll_interval = raw.poll_interval.unwrap_or(Duration::from_secs(1));
        if !INTERVALS.contains(&poll_interval) {
            return Err("crowdsec.poll_interval: must be between 100ms and 5m".to_owned());
        }
        let timeout = raw.timeout.unwrap_or(Duration::from_secs(5));
        if !TIMEOUTS.contains(&timeout) {
            return Err("crowdsec.timeout: must be between 100ms and 60s".to_owned());
        }
        let types = raw.types.unwrap_or_else(|| vec!["ban".to_owned()]);
        if types.is_empty() || types.iter().any(String::is_empty) {
            return Err("crowdsec.types: name at least one decision type (`ban`)".to_owned());
        }
        let scopes: Vec<String> = raw
            .scopes
            .unwrap_or_else(|| vec!["ip".to_owned(), "range".to_owned()])
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        if scopes.is_empty() {
            return Err("crowdsec.scopes: name `ip`, `range` or both".to_owned());
        }
        if let Some(other) = scopes
            .iter()
            .find(|s| !matches!(s.as_str(), "ip" | "range"))
        {
            return Err(format!(
                "crowdsec.scopes: `{other}` is not a scope a ban map can hold (`ip`, `range`)"
            ));
        }
        Ok(CrowdsecConfig {
            lapi_url: raw.lapi_url.trim_end_matches('/').to_owned(),
            api_key,
            ca_file: raw.ca_file,
            poll_interval,
            timeout,
            types,
            scopes,
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Secret};

    fn error(text: &str) -> String {
        parse(text, std::path::Path::new("t.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_crowdsec_table_is_typed_when_parsed() {
        let config = parse(
            "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080/\"\napi_key_env = \"CS_KEY\"\npoll_interval = \"2s\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let crowdsec = config.crowdsec.unwrap();
        assert_eq!(crowdsec.lapi_url, "http://127.0.0.1:8080");
        assert_eq!(crowdsec.api_key, Secret::Env("CS_KEY".to_owned()));
        assert_eq!(crowdsec.poll_interval, std::time::Duration::from_secs(2));
        assert_eq!(crowdsec.types, ["ban"]);
        assert_eq!(crowdsec.scopes, ["ip", "range"]);
    }

    #[test]
    fn a_bad_crowdsec_table_names_its_key() {
        for (text, key) in [
            (
                "lapi_url = \"http://10.0.0.5:8080\"\napi_key_env = \"K\"",
                "lapi_url",
            ),
            ("lapi_url = \"https://lapi\"", "api_key_file"),
            (
                "lapi_url = \"https://lapi\"\napi_key_file = \"key\"",
                "api_key_file",
            ),
            (
                "lapi_url = \"https://lapi\"\napi_key_env = \"K\"\npoll_interval = \"1ms\"",
                "poll_interval",
            ),
            (
                "lapi_url = \"https://lapi\"\napi_key_env = \"K\"\nscopes = [\"country\"]",
                "scopes",
            ),
            (
                "lapi_url = \"https://lapi\"\napi_key_env = \"K\"\napi_key = \"inline\"",
                "api_key",
            ),
            (
                "lapi_url = \"https://lapi\"\napi_key_env = \"K\"\nreport = true",
                "report",
            ),
            (
                "lapi_url = \"https://lapi\"\napi_key_env = \"K\"\nmachine_id = \"m\"",
                "report",
            ),
        ] {
            let message = error(&format!("[crowdsec]\n{text}\n"));
            assert!(message.contains(key), "{text}: {message}");
            assert!(message.contains("t.toml"), "{message}");
        }
    }
}
