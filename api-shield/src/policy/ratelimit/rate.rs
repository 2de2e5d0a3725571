//! Rates as operators write them: `"5 per minute"`, `"100 per second"`, `"20/s"`.

use std::{fmt, time::Duration};

/// A count of requests per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests.
    pub count: u32,
    /// Per this long.
    pub period: Duration,
}

/// A rate that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a rate; write e.g. \"5 per minute\" or \"100/s\" (second, minute, hour, day)"
)]
pub struct RateError {
    /// What was written.
    pub text: String,
}

impl Rate {
    /// Parses `<n> per <unit>` or `<n>/<unit>`.
    pub fn parse(text: &str) -> Result<Rate, RateError> {
        let err = || RateError {
            text: text.to_owned(),
        };
        let lower = text.trim().to_ascii_lowercase();
        let (count, unit) = lower
            .split_once(" per ")
            .or_else(|| lower.split_once('/'))
            .ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_mins(1),
            "h" | "hour" => Duration::from_hours(1),
            "d" | "day" => Duration::from_hours(24),
            _ => return Err(err()),
        };
        if count == 0 {
            return Err(err());
        }
        Ok(Rate { count, period })
    }

    /// Time between two requests at this rate, in nanoseconds (at least 1).
    pub fn interval_ns(self) -> u64 {
        (self.period.as_nanos() / u128::from(self.count)).max(1) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}s", self.count, self.period.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_forms_parse() {
        assert_eq!(
            Rate::parse("5 per minute").unwrap(),
            Rate {
                count: 5,
                period: Duration::from_mins(1)
            }
        );
        assert_eq!(Rate::parse("100/s").unwrap().interval_ns(), 10_000_000);
        assert_eq!(
            Rate::parse(" 2 per Hour ").unwrap().period,
            Duration::from_hours(1)
        );
        for bad in [
            "",
            "5",
            "0 per second",
            "five per minute",
            "5 per fortnight",
            "-1/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
