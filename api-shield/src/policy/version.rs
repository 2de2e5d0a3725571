//! API versions and route deprecation: the version of a request (from a `v<N>` path segment or
//! a header), and for deprecated versions or routes the RFC 9745 `Deprecation` (`@epoch`), RFC
//! 8594 `Sunset` (HTTP date) and `Link` (`rel="deprecation"`, `rel="successor-version"`)
//! headers; past the sunset, 410 Gone unless configured to keep serving.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use prometheus::IntCounter;

use super::{
    clock::{unix_seconds, SharedClock},
    time::parse_rfc3339,
};
use crate::{
    config::{problem, AfterSunset, DeprecationConfig, Problem, VersionSource, VersioningConfig},
    refusal::{Advice, Denial, DeprecationNotice, Refusal},
};

/// A compiled deprecation.
#[derive(Debug)]
pub struct Deprecation {
    /// What it applies to, for logs and metrics (`v1`, or a route name).
    pub label: String,
    sunset_unix: Option<u64>,
    after_sunset: AfterSunset,
    notice: Arc<DeprecationNotice>,
    /// Requests answered with these headers (or refused after the sunset):
    /// `api_shield_deprecated_requests_total{deprecation="<label>"}`.
    pub requests: IntCounter,
}

impl Deprecation {
    /// Compiles a deprecation found at `key`.
    pub fn compile(
        config: &DeprecationConfig,
        key: &str,
        label: &str,
    ) -> Result<Deprecation, Problem> {
        let deprecated = config
            .deprecated
            .as_deref()
            .map(|t| parse_rfc3339(t, &format!("{key}.deprecated")))
            .transpose()?;
        let sunset = config
            .sunset
            .as_deref()
            .map(|t| parse_rfc3339(t, &format!("{key}.sunset")))
            .transpose()?;
        if deprecated.is_none() && sunset.is_none() {
            return Err(problem(key, "give `deprecated`, `sunset` or both"));
        }
        if let (Some(deprecated), Some(sunset)) = (deprecated, sunset) {
            if sunset < deprecated {
                return Err(problem(
                    format!("{key}.sunset"),
                    "must not be before `deprecated`",
                ));
            }
        }
        // Each header's text is checked here, once, so answers never fail to carry it.
        let header_text = |text: String, field: &str| {
            HeaderValue::from_str(&text)
                .map(|_| text)
                .map_err(|_| problem(format!("{key}.{field}"), "not a URL"))
        };
        let mut links = Vec::new();
        for (field, url, rel) in [
            ("link", &config.link, "deprecation"),
            ("successor", &config.successor, "successor-version"),
        ] {
            if let Some(url) = url {
                if url.is_empty() || url.contains(['<', '>', '"', ' ', '\n', '\r']) {
                    return Err(problem(format!("{key}.{field}"), "not a URL"));
                }
                links.push(format!("<{url}>; rel=\"{rel}\""));
            }
        }
        let notice = DeprecationNotice {
            // Digits and an HTTP date are header text.
            deprecation: deprecated.map(|at| format!("@{at}")),
            sunset: sunset.map(|at| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(at))),
            link: (!links.is_empty())
                .then(|| header_text(links.join(", "), "link"))
                .transpose()?,
        };
        Ok(Deprecation {
            label: label.to_owned(),
            sunset_unix: sunset,
            after_sunset: config.after_sunset,
            notice: Arc::new(notice),
            requests: crate::telemetry::metrics()
                .deprecated
                .with_label_values(&[label]),
        })
    }

    /// The notice for a response now, or 410 (with the notice) once past the sunset.
    pub fn check(&self, clock: &SharedClock) -> Result<Advice, Refusal> {
        self.requests.inc();
        let now = unix_seconds(&**clock);
        let advice = Advice::Deprecation(Arc::clone(&self.notice));
        if self.after_sunset == AfterSunset::Gone && self.sunset_unix.is_some_and(|s| now >= s) {
            return Err(Refusal::new(Denial::Gone).advise(advice));
        }
        Ok(advice)
    }
}

/// How versions are read, and the deprecated ones.
#[derive(Debug)]
pub(crate) struct Versioning {
    source: VersionSource,
    header: HeaderName,
    deprecated: HashMap<String, Arc<Deprecation>>,
}

impl Versioning {
    /// Compiles `[versioning]`.
    pub(crate) fn compile(config: &VersioningConfig) -> Result<Versioning, Problem> {
        let header = HeaderName::try_from(config.header.as_str())
            .map_err(|_| problem("versioning.header", "not a header name"))?;
        let mut deprecated = HashMap::new();
        for (i, version) in config.versions.iter().enumerate() {
            let key = format!("versioning.versions[{i}]");
            if version.name.is_empty() {
                return Err(problem(format!("{key}.name"), "must not be empty"));
            }
            let compiled = Deprecation::compile(&version.deprecation, &key, &version.name)?;
            if deprecated
                .insert(version.name.clone(), Arc::new(compiled))
                .is_some()
            {
                return Err(problem(
                    format!("{key}.name"),
                    format!("`{}` is listed twice", version.name),
                ));
            }
        }
        Ok(Versioning {
            source: config.source,
            header,
            deprecated,
        })
    }

    /// The header the version is read from, when it is read from a header.
    pub(crate) fn header(&self) -> Option<&HeaderName> {
        (self.source == VersionSource::Header).then_some(&self.header)
    }

    /// The deprecation of the request's version, if it has one.
    pub(crate) fn of(&self, path: &str, headers: &HeaderMap) -> Option<&Arc<Deprecation>> {
        if self.deprecated.is_empty() {
            return None;
        }
        let version = match self.source {
            VersionSource::Path => path.split('/').skip(1).take(3).find(|s| is_version(s))?,
            VersionSource::Header => headers.get(&self.header)?.to_str().ok()?.trim(),
        };
        self.deprecated.get(version)
    }
}

/// `v1`, `v2`, `v1.1`.
fn is_version(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::VersionConfig, policy::clock::ManualClock};

    fn versioning() -> Versioning {
        Versioning::compile(&VersioningConfig {
            versions: vec![VersionConfig {
                name: "v1".into(),
                deprecation: DeprecationConfig {
                    deprecated: Some("2026-01-01T00:00:00Z".into()),
                    sunset: Some("2026-07-01T00:00:00Z".into()),
                    successor: Some("https://api.example.com/api/v2".into()),
                    link: Some("https://docs.example.com/v1-retirement".into()),
                    after_sunset: AfterSunset::Gone,
                },
            }],
            ..VersioningConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn deprecated_versions_carry_headers_then_go() {
        let versioning = versioning();
        let headers = HeaderMap::new();
        assert!(versioning.of("/api/v2/orders", &headers).is_none());
        assert!(versioning.of("/api/v10/orders", &headers).is_none());
        let v1 = versioning.of("/api/v1/orders", &headers).unwrap();
        let clock: SharedClock = Arc::new(ManualClock::new(1_770_000_000)); // 2026-02
        let Advice::Deprecation(out) = v1.check(&clock).unwrap() else {
            panic!("not a deprecation notice");
        };
        assert_eq!(out.deprecation.as_deref(), Some("@1767225600"));
        assert_eq!(out.sunset.as_deref(), Some("Wed, 01 Jul 2026 00:00:00 GMT"));
        assert_eq!(
            out.link.as_deref(),
            Some("<https://docs.example.com/v1-retirement>; rel=\"deprecation\", <https://api.example.com/api/v2>; rel=\"successor-version\"")
        );
        let after: SharedClock = Arc::new(ManualClock::new(1_782_864_000)); // 2026-07-01
        let refusal = v1.check(&after).unwrap_err();
        assert_eq!(refusal.denial, Denial::Gone);
        assert_eq!(refusal.advice, [Advice::Deprecation(out)]);
        assert_eq!(v1.requests.get(), 2);
    }

    #[test]
    fn sunset_before_deprecation_is_refused() {
        let err = Deprecation::compile(
            &DeprecationConfig {
                deprecated: Some("2026-07-01T00:00:00Z".into()),
                sunset: Some("2026-01-01T00:00:00Z".into()),
                ..DeprecationConfig::default()
            },
            "routes[0].deprecation",
            "r",
        )
        .unwrap_err();
        assert_eq!(err.key, "routes[0].deprecation.sunset");
    }

    #[test]
    fn header_source() {
        let mut config = VersioningConfig {
            source: VersionSource::Header,
            ..VersioningConfig::default()
        };
        config.versions.push(VersionConfig {
            name: "2024-01-01".into(),
            deprecation: DeprecationConfig {
                deprecated: Some("2025-01-01T00:00:00Z".into()),
                ..DeprecationConfig::default()
            },
        });
        let versioning = Versioning::compile(&config).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("api-version", "2024-01-01".parse().unwrap());
        assert!(versioning.of("/orders", &headers).is_some());
        assert!(versioning.of("/v1/orders", &HeaderMap::new()).is_none());
    }
}
