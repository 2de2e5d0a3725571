//! One access-log line: its fields and its two formats, written into a buffer the caller reuses
//! (no allocation per field or per line).
//!
//! Text: `2026-12-06T20:01:02.123456Z access request_id=… client_ip=… route=… method=…
//! status=… bytes=… duration_ms=… denial=…`, one line, `-` for a field that has no value, no
//! colour codes. JSON: one object per line with `ts`, `target` (`"access"`, so the lines can
//! be told apart in a stream shared with the daemon's other logs) and the same fields, `null`
//! for a field without a value.

use super::LogFormat;
use std::{
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, SystemTime},
};

/// What one line says of one request.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// The request id (sent upstream and back to the client as `X-Request-Id`).
    pub request_id: &'a str,
    /// The client address (after `trusted_proxies` and the PROXY protocol).
    pub client_ip: IpAddr,
    /// The route's name; `None` when no route matched.
    pub route: Option<&'a str>,
    /// The method; `None` for a request that could not be parsed.
    pub method: Option<&'a str>,
    /// The status sent (499 when the client went away first).
    pub status: u16,
    /// The response body's length when it was known up front.
    pub bytes: Option<u64>,
    /// From the head parsed to the answer's head sent; `None` for a request never parsed.
    pub duration: Option<Duration>,
    /// The refusal's slug (`rate-limited`, …) when the shield refused it.
    pub denial: Option<&'a str>,
}

impl AccessLine<'_> {
    /// Appends the line and its newline to `out` in `format`, stamped `now`.
    pub fn write(&self, format: LogFormat, now: SystemTime, out: &mut String) {
        match format {
            LogFormat::Text => self.write_text(now, out),
            LogFormat::Json => self.write_json(now, out),
        }
    }

    fn write_text(&self, now: SystemTime, out: &mut String) {
        let dash = "-";
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "{} access request_id={} client_ip={} route={} method={} status={} bytes=",
            humantime::format_rfc3339_micros(now),
            self.request_id,
            self.client_ip,
            self.route.unwrap_or(dash),
            self.method.unwrap_or(dash),
            self.status,
        );
        match self.bytes {
            Some(bytes) => {
                let _ = write!(out, "{bytes}");
            }
            None => out.push_str(dash),
        }
        out.push_str(" duration_ms=");
        match self.duration {
            Some(duration) => millis(duration, out),
            None => out.push_str(dash),
        }
        out.push_str(" denial=");
        out.push_str(self.denial.unwrap_or(dash));
        out.push('\n');
    }

    fn write_json(&self, now: SystemTime, out: &mut String) {
        let _ = write!(
            out,
            "{{\"ts\":\"{}\",\"target\":\"access\",\"request_id\":",
            humantime::format_rfc3339_micros(now)
        );
        json_string(self.request_id, out);
        let _ = write!(out, ",\"client_ip\":\"{}\",\"route\":", self.client_ip);
        json_option(self.route, out);
        out.push_str(",\"method\":");
        json_option(self.method, out);
        let _ = write!(out, ",\"status\":{},\"bytes\":", self.status);
        match self.bytes {
            Some(bytes) => {
                let _ = write!(out, "{bytes}");
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"duration_ms\":");
        match self.duration {
            Some(duration) => millis(duration, out),
            None => out.push_str("null"),
        }
        out.push_str(",\"denial\":");
        json_option(self.denial, out);
        out.push_str("}\n");
    }
}

/// `duration` in milliseconds with three decimals, from integer microseconds: float
/// formatting (Grisu, then Dragon for exact digits) showed in the proxy's profile.
fn millis(duration: Duration, out: &mut String) {
    let micros = duration.as_micros();
    let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
}

fn json_option(value: Option<&str>, out: &mut String) {
    match value {
        Some(text) => json_string(text, out),
        None => out.push_str("null"),
    }
}

/// `text` as a JSON string. By hand, in place: `serde_json`'s escaper writes through an
/// `io::Write` and a formatter, which is more machinery than a few short fields need. Request
/// ids are printable ASCII but may hold `"` or `\`; route names come from the config.
fn json_string(text: &str, out: &mut String) {
    out.push('"');
    let escaped = |c: char| c == '"' || c == '\\' || c.is_control();
    // Almost every field needs no escape: one byte scan, then one copy.
    if !text
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b))
    {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut rest = text;
    while let Some(at) = rest.find(escaped) {
        out.push_str(&rest[..at]);
        let c = rest[at..]
            .chars()
            .next()
            .expect("a char where find stopped");
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other => {
                let _ = write!(out, "\\u{:04x}", u32::from(other));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLine<'static> {
        AccessLine {
            request_id: "id-\"quoted\"\\",
            client_ip: "2001:db8::7".parse().unwrap(),
            route: Some("orders"),
            method: Some("POST"),
            status: 429,
            bytes: Some(215),
            duration: Some(Duration::from_micros(1_234)),
            denial: Some("rate-limited"),
        }
    }

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_765_051_262_123_456)
    }

    #[test]
    fn text_lines_are_one_line_of_key_value_pairs_without_colour_codes() {
        let mut out = String::new();
        line().write(LogFormat::Text, at(), &mut out);
        assert_eq!(
            out,
            "2025-12-06T20:01:02.123456Z access request_id=id-\"quoted\"\\ client_ip=2001:db8::7 \
             route=orders method=POST status=429 bytes=215 duration_ms=1.234 denial=rate-limited\n"
        );
        let unparsed = AccessLine {
            route: None,
            method: None,
            bytes: None,
            duration: None,
            denial: None,
            ..line()
        };
        out.clear();
        unparsed.write(LogFormat::Text, at(), &mut out);
        assert!(
            out.ends_with("route=- method=- status=429 bytes=- duration_ms=- denial=-\n"),
            "{out}"
        );
    }

    #[test]
    fn durations_are_milliseconds_with_three_decimals() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_234, "1.234"),
            (12_000_000, "12000.000"),
        ] {
            let mut out = String::new();
            millis(Duration::from_nanos(micros * 1000 + 999), &mut out);
            assert_eq!(out, text);
        }
    }

    #[test]
    fn json_lines_parse_and_carry_every_field_escaped() {
        let mut out = String::new();
        line().write(LogFormat::Json, at(), &mut out);
        let hostile = AccessLine {
            route: Some("a\nb\u{1}c"),
            bytes: None,
            denial: None,
            ..line()
        };
        hostile.write(LogFormat::Json, at(), &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["ts"], "2025-12-06T20:01:02.123456Z");
        assert_eq!(first["target"], "access");
        assert_eq!(first["request_id"], "id-\"quoted\"\\");
        assert_eq!(first["client_ip"], "2001:db8::7");
        assert_eq!(first["route"], "orders");
        assert_eq!(first["method"], "POST");
        assert_eq!(first["status"], 429);
        assert_eq!(first["bytes"], 215);
        assert_eq!(first["duration_ms"], 1.234);
        assert_eq!(first["denial"], "rate-limited");
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["route"], "a\nb\u{1}c");
        assert!(second["bytes"].is_null() && second["denial"].is_null());
    }
}
