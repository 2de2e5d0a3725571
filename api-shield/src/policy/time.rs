//! Times written in the config (RFC 3339, e.g. `2027-01-01T00:00:00Z`), as Unix seconds.

use std::time::UNIX_EPOCH;

use crate::config::{problem, Problem};

/// Unix seconds of an RFC 3339 time found at `key`.
pub(crate) fn parse_rfc3339(text: &str, key: &str) -> Result<u64, Problem> {
    let time = humantime::parse_rfc3339_weak(text.trim()).map_err(|_| {
        problem(
            key,
            format!("`{text}` is not an RFC 3339 time (e.g. \"2027-01-01T00:00:00Z\")"),
        )
    })?;
    Ok(time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| problem(key, "must be after 1970"))?
        .as_secs())
}
