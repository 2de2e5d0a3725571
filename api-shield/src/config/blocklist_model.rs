//! The `[[blocklists]]` tables: lists of addresses and networks (Spamhaus DROP, `FireHOL` netsets,
//! an operator's own) loaded from a file or a URL into the kernel's deny table, each under its
//! own name. Typed when parsed, so a bad URL, a bad name or an out-of-range interval is an error
//! at its key and line.

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

/// Bounds of `refresh`.
const REFRESHES: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_hours(7 * 24);

/// Bounds of `timeout`.
const TIMEOUTS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_mins(10);

/// Bounds of `max_bytes`.
const SIZES: std::ops::RangeInclusive<u64> = 1024..=(1 << 30);

/// Where a list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSource {
    /// A local file, read again when it changes.
    File(PathBuf),
    /// An `http(s)://` URL, fetched again every `refresh` (conditionally: `ETag` and
    /// Last-Modified).
    Url(String),
}

/// One `[[blocklists]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawBlocklistConfig")]
pub struct BlocklistConfig {
    /// The list's name: its reason (`list:NAME`), its counters and its metrics' label.
    pub name: String,
    /// Where it comes from.
    pub source: ListSource,
    /// How often the source is looked at again.
    pub refresh: Duration,
    /// Longest wait for one fetch of a URL.
    pub timeout: Duration,
    /// Largest list accepted, in bytes; a larger one is refused and the last good copy stays.
    pub max_bytes: u64,
    /// CA certificates (PEM) for an `https://` URL; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Where the last good copy of a URL's list is kept, so a restart with the URL unreachable
    /// still applies it (default: `<fastpath.runtime_dir>/blocklists/NAME.list`).
    pub cache_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlocklistConfig {
    name: String,
    file: Option<PathBuf>,
    url: Option<String>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    refresh: Option<Duration>,
    #[serde(default, deserialize_with = "super::model::optional_duration")]
    timeout: Option<Duration>,
    max_bytes: Option<u64>,
    ca_file: Option<PathBuf>,
    cache_file: Option<PathBuf>,
}

/// Whether `name` can name a list: 1 to 31 bytes of `a-z`, `0-9`, `-`, `_`, `.`, and not
/// the config's own list (`deny`).
pub fn check_list_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if name.is_empty() || name.len() > 31 || !name.chars().all(allowed) {
        return Err(format!(
            "blocklists.name: `{name}` must be 1 to 31 characters of a-z, 0-9, `-`, `_` and `.`"
        ));
    }
    if name == "deny" {
        return Err(
            "blocklists.name: `deny` names the config's own fastpath.deny list; choose another"
                .to_owned(),
        );
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("blocklists.url: `{url}` is not a URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("https" | "http"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(format!(
            "blocklists.url: `{url}` must be an http:// or https:// URL"
        )),
    }
}

impl TryFrom<RawBlocklistConfig> for BlocklistConfig {
    type Error = String;

    fn try_from(raw: RawBlocklistConfig) -> Result<Self, String> {
        check_list_name(&raw.name)?;
        let source = match (raw.file, raw.url) {
            (Some(_), Some(_)) => {
                return Err("blocklists.url: give a file or a url, not both".to_owned())
            }
            (None, None) => {
                return Err("blocklists.file: name the list's file (or its url)".to_owned())
            }
            (Some(path), None) if !path.is_absolute() => {
                return Err(format!(
                    "blocklists.file: `{}` must be an absolute path",
                    path.display()
                ))
            }
            (Some(path), None) => ListSource::File(path),
            (None, Some(url)) => {
                check_url(&url)?;
                ListSource::Url(url)
            }
        };
        let default_refresh = match source {
            ListSource::File(_) => Duration::from_secs(10),
            ListSource::Url(_) => Duration::from_hours(1),
        };
        let refresh = raw.refresh.unwrap_or(default_refresh);
        if !REFRESHES.contains(&refresh) {
            return Err("blocklists.refresh: must be between 1s and 7 days".to_owned());
        }
        let timeout = raw.timeout.unwrap_or(Duration::from_secs(30));
        if !TIMEOUTS.contains(&timeout) {
            return Err("blocklists.timeout: must be between 100ms and 10m".to_owned());
        }
        let max_bytes = raw.max_bytes.unwrap_or(64 * 1024 * 1024);
        if !SIZES.contains(&max_bytes) {
            return Err("blocklists.max_bytes: must be between 1024 and 1073741824".to_owned());
        }
        for (key, path) in [("ca_file", &raw.ca_file), ("cache_file", &raw.cache_file)] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                return Err(format!("blocklists.{key}: must be an absolute path"));
            }
        }
        if raw.ca_file.is_some() && !matches!(source, ListSource::Url(_)) {
            return Err("blocklists.ca_file: only a url is fetched over TLS".to_owned());
        }
        Ok(BlocklistConfig {
            name: raw.name,
            source,
            refresh,
            timeout,
            max_bytes,
            ca_file: raw.ca_file,
            cache_file: raw.cache_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BlocklistConfig, String> {
        let raw: RawBlocklistConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        BlocklistConfig::try_from(raw)
    }

    #[test]
    fn a_url_list_gets_an_hourly_refresh_and_a_64_mib_cap() {
        let list =
            parse("name = \"drop\"\nurl = \"https://www.spamhaus.org/drop/drop.txt\"").unwrap();
        assert_eq!(list.refresh, Duration::from_hours(1));
        assert_eq!(list.max_bytes, 64 * 1024 * 1024);
        assert_eq!(
            list.source,
            ListSource::Url("https://www.spamhaus.org/drop/drop.txt".to_owned())
        );
    }

    #[test]
    fn names_sources_and_bounds_are_checked() {
        assert!(parse("name = \"Bad Name\"\nfile = \"/x\"")
            .unwrap_err()
            .contains("a-z"));
        assert!(parse("name = \"deny\"\nfile = \"/x\"")
            .unwrap_err()
            .contains("fastpath.deny"));
        assert!(parse("name = \"a\"\nfile = \"x\"")
            .unwrap_err()
            .contains("absolute"));
        assert!(parse("name = \"a\"")
            .unwrap_err()
            .contains("blocklists.file"));
        assert!(parse("name = \"a\"\nfile = \"/x\"\nurl = \"https://h/x\"")
            .unwrap_err()
            .contains("not both"));
        assert!(parse("name = \"a\"\nurl = \"ftp://h/x\"")
            .unwrap_err()
            .contains("http"));
        assert!(parse("name = \"a\"\nfile = \"/x\"\nrefresh = \"10ms\"")
            .unwrap_err()
            .contains("refresh"));
        assert!(parse("name = \"a\"\nfile = \"/x\"\nmax_bytes = 10")
            .unwrap_err()
            .contains("max_bytes"));
    }
}
