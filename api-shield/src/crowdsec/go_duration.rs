//! Durations as the CrowdSec Local API writes them: Go's `time.Duration` text (`1m58.9s`,
//! `3h59m59.5s`, `-1.5s` for a decision already over). Hand-written because `humantime` reads
//! a different grammar (spaces, no fractions per unit) and no maintained crate reads Go's.

use std::time::Duration;

/// A Go duration: how long is left, or `None` when it is negative (already over).
pub(crate) fn parse(text: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("`{text}` is not a Go duration");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    if negative && total > 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(total)
        .map(Some)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn reads_what_the_lapi_writes() {
        assert_eq!(
            parse("1m58.9s").unwrap(),
            Some(Duration::from_millis(118_900))
        );
        assert_eq!(
            parse("3h59m59.5s").unwrap(),
            Some(Duration::from_millis(14_399_500))
        );
        assert_eq!(
            parse("167h59m58.123456789s").unwrap().unwrap().as_secs(),
            604_798
        );
        assert_eq!(parse("1.5ms").unwrap(), Some(Duration::from_micros(1500)));
        assert_eq!(parse("0").unwrap(), Some(Duration::ZERO));
        assert_eq!(parse("-1.5s").unwrap(), None);
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in ["", "-", "5", "1d", "h", "1..2s", "1m 2s", "NaNs"] {
            assert!(parse(text).is_err(), "{text}");
        }
    }
}
