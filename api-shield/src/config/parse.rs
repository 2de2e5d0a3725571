//! Pure parsing: TOML text to a validated [`Config`], errors naming line and key.

use std::path::Path;

use super::{
    error::Location, locate::line_column, model::Config, source::Source, validate, ConfigError,
};

/// Parses and validates config text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = error.path().to_string();
        let inner = error.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigError::Syntax {
            location: Location {
                file: origin.to_path_buf(),
                line,
                column,
            },
            key: (!key.is_empty() && key != ".").then_some(key),
            message: inner.message().trim().to_owned(),
        }
    })?;
    config.source = Source {
        file: origin.to_path_buf(),
        text: text.into(),
    };
    validate::validate(&config).map_err(|problem| config.source.error(problem))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_text_gives_defaults() {
        let config = parse_str("").unwrap();
        assert_eq!(config.fastpath.interfaces, vec!["lo".to_owned()]);
        assert_eq!(config.fastpath.limiter.ipv6_prefix, 64);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err =
            parse_str("[fastpath]\nenabled = true\n\n[fastpath.limiter]\nrat = 5\n").unwrap_err();
        assert_eq!(err.line(), Some(5), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("test.toml:5"), "{text}");
        assert!(text.contains("rat"), "{text}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse_str("[fastpath.limiter]\nburst = \"many\"\n").unwrap_err();
        assert_eq!(err.key(), Some("fastpath.limiter.burst"), "{err}");
        assert_eq!(err.line(), Some(2), "{err}");
    }

    #[test]
    fn bad_cidr_names_element_and_line() {
        let err =
            parse_str("[fastpath]\nallow = [\n \"10.0.0.0/8\",\n \"10.0.0.0/33\"]\n").unwrap_err();
        assert_eq!(err.line(), Some(4), "{err}");
        assert!(err.key().unwrap().starts_with("fastpath.allow"), "{err}");
    }

    #[test]
    fn durations_and_port_ranges_parse() {
        let config = parse_str(
            "[fastpath.events]\ninterval = \"1m 30s\"\n[fastpath.limiter.protect]\ntcp = [80, \"8000-8002\"]\n",
        )
        .unwrap();
        assert_eq!(config.fastpath.events.interval.as_secs(), 90);
        assert_eq!(config.fastpath.limiter.protect.tcp[1].last, 8002);
    }

    #[test]
    fn bad_duration_is_an_error_on_its_line() {
        let err = parse_str("[fastpath.events]\ninterval = \"soon\"\n").unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(err.to_string().contains("duration"), "{err}");
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let err =
            parse_str("[fastpath]\n\n[fastpath.limiter]\nburst = 10\nrate = 0\n").unwrap_err();
        assert_eq!(err.key(), Some("fastpath.limiter.rate"));
        assert_eq!(err.line(), Some(5), "{err}");
    }

    #[test]
    fn the_access_log_table_is_typed_when_parsed() {
        let config = parse_str(
            "[access_log]\nsink = \"file\"\npath = \"/var/log/api-shield/access.log\"\n\
             format = \"json\"\nflush_interval = \"100ms\"\n",
        )
        .unwrap();
        let log = &config.access_log;
        assert_eq!(
            log.sink,
            crate::config::AccessLogSink::File("/var/log/api-shield/access.log".into())
        );
        assert_eq!(log.format, Some(crate::telemetry::LogFormat::Json));
        assert_eq!(log.flush_interval, std::time::Duration::from_millis(100));
        assert_eq!(
            parse_str("").unwrap().access_log,
            crate::config::AccessLogConfig::default()
        );
        for (text, says) in [
            ("sink = \"file\"", "needs a path"),
            ("sink = \"file\"\npath = \"access.log\"", "absolute"),
            (
                "sink = \"off\"\npath = \"/tmp/a.log\"",
                "only `sink = \"file\"`",
            ),
            ("sink = \"syslog\"", "not a sink"),
            ("flush_interval = \"5s\"", "between 10ms and 1s"),
            ("buffer_bytes = 100", "between 65536"),
        ] {
            let err = parse_str(&format!("[fastpath]\n\n[access_log]\n{text}\n")).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(says), "{text}: {message}");
            assert!(message.contains("access_log"), "{text}: {message}");
            assert_eq!(err.line(), Some(3), "{text}: {message}");
        }
    }
}
