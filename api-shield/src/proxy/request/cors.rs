//! CORS per route: origins allowed exactly, by subdomain pattern or all (`*`, never with
//! credentials: the config is refused at load). Preflights are answered at the edge; actual
//! responses get the CORS headers only for an allowed origin, and `Vary: Origin` whenever the
//! answer depends on the origin.

use std::time::Duration;

use http::{header, HeaderMap, HeaderValue};

use crate::{config::CorsConfig, pattern::OriginPattern};

/// A route's compiled CORS policy.
#[derive(Debug, Clone)]
pub(crate) struct CorsPolicy {
    origins: Vec<OriginPattern>,
    any: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<Duration>,
}

/// The answer to a preflight.
#[derive(Debug)]
pub(crate) enum Preflight {
    /// Allowed: send 204 with these headers.
    Allowed(HeaderMap),
    /// Not allowed: no CORS headers (these are the `Vary` headers to send anyway).
    Denied(HeaderMap),
}

impl CorsPolicy {
    /// Compiles a route's CORS config; `route_methods` are the default preflight methods.
    pub(crate) fn compile(config: &CorsConfig, route_methods: Option<&[String]>) -> CorsPolicy {
        let origins = config.origins.clone();
        let methods = if config.methods.is_empty() {
            route_methods.map_or_else(
                || vec!["GET".to_owned(), "HEAD".to_owned(), "POST".to_owned()],
                <[String]>::to_vec,
            )
        } else {
            config.methods.clone()
        };
        CorsPolicy {
            any: origins.contains(&OriginPattern::Any),
            origins,
            methods,
            headers: config
                .headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            expose: (!config.expose.is_empty())
                .then(|| HeaderValue::from_str(&config.expose.join(", ")).ok())
                .flatten(),
            credentials: config.credentials,
            max_age: config.max_age,
        }
    }

    /// Whether the answer depends on the request's origin (then `Vary: Origin` is due).
    fn varies(&self) -> bool {
        !self.any || self.credentials
    }

    fn allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|p| p.matches(origin))
    }

    fn allow_origin_value(&self, origin: &str) -> Option<HeaderValue> {
        if self.any && !self.credentials {
            Some(HeaderValue::from_static("*"))
        } else {
            HeaderValue::from_str(origin).ok()
        }
    }

    /// Answers a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`).
    pub(crate) fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Preflight {
        let mut vary = HeaderMap::new();
        vary.append(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let requested: Vec<String> = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let method_ok = self.methods.iter().any(|m| m == method);
        let headers_ok = requested.iter().all(|h| self.headers.contains(h));
        let Some(allow_origin) = self.allow_origin_value(origin) else {
            return Preflight::Denied(vary);
        };
        if !self.allowed(origin) || !method_ok || !headers_ok {
            return Preflight::Denied(vary);
        }
        let mut out = vary;
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if let Ok(methods) = HeaderValue::from_str(&self.methods.join(", ")) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if !requested.is_empty() {
            if let Ok(headers) = HeaderValue::from_str(&requested.join(", ")) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, headers);
            }
        }
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(max_age) = self.max_age {
            out.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(max_age.as_secs()),
            );
        }
        Preflight::Allowed(out)
    }

    /// Sets the CORS headers of an actual response: the upstream's own are removed first, so
    /// only this policy decides what a browser may read.
    pub(crate) fn apply(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
        if self.varies() {
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = origin else {
            return;
        };
        if !self.allowed(origin) {
            return;
        }
        let Some(value) = self.allow_origin_value(origin) else {
            return;
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::compile(
            &CorsConfig {
                origins: origins
                    .iter()
                    .map(|s| OriginPattern::parse(s).unwrap())
                    .collect(),
                methods: vec!["GET".into(), "PUT".into()],
                headers: vec!["Content-Type".into(), "authorization".into()],
                expose: vec!["x-request-id".into()],
                credentials,
                max_age: Some(Duration::from_mins(10)),
            },
            None,
        )
    }

    #[test]
    fn origin_patterns() {
        let p = policy(
            &[
                "https://app.example.com",
                "https://*.example.org",
                "http://*.local.test:8080",
            ],
            true,
        );
        assert!(p.allowed("https://app.example.com"));
        assert!(p.allowed("HTTPS://APP.example.com"));
        assert!(!p.allowed("http://app.example.com"));
        assert!(!p.allowed("https://app.example.com.evil.com"));
        assert!(p.allowed("https://a.example.org"));
        assert!(p.allowed("https://a.b.example.org"));
        assert!(!p.allowed("https://example.org"));
        assert!(!p.allowed("https://evilexample.org"));
        assert!(!p.allowed("https://a.example.org:8443"));
        assert!(p.allowed("http://x.local.test:8080"));
        assert!(!p.allowed("http://x.local.test"));
        for bad in [
            "example.com",
            "ftp://x.com",
            "https://",
            "https://*.",
            "https://a.com/path",
            "https://x.com:99999",
        ] {
            assert!(OriginPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflight_allows_listed_method_and_headers_only() {
        let p = policy(&["https://app.example.com"], true);
        let Preflight::Allowed(h) = p.preflight(
            "https://app.example.com",
            "PUT",
            Some("content-type, Authorization"),
        ) else {
            panic!("denied")
        };
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type, authorization"
        );
        assert!(h[header::VARY].to_str().unwrap().contains("Origin"));
        assert!(matches!(
            p.preflight("https://app.example.com", "DELETE", None),
            Preflight::Denied(_)
        ));
        assert!(matches!(
            p.preflight("https://app.example.com", "PUT", Some("x-evil")),
            Preflight::Denied(_)
        ));
        match p.preflight("https://evil.com", "PUT", None) {
            Preflight::Denied(h) => {
                assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
                assert!(h.get(header::VARY).is_some());
            }
            Preflight::Allowed(_) => panic!("allowed a foreign origin"),
        }
    }

    #[test]
    fn actual_responses_get_headers_for_allowed_origins_and_vary_always() {
        let p = policy(&["https://app.example.com"], false);
        let mut h = HeaderMap::new();
        p.apply(Some("https://app.example.com"), &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "x-request-id");
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(h[header::VARY], "Origin");
        let mut h = HeaderMap::new();
        // An upstream reflecting any origin does not get its way.
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://evil.com"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        p.apply(Some("https://evil.com"), &mut h);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(h[header::VARY], "Origin");
        let mut h = HeaderMap::new();
        p.apply(None, &mut h);
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn wildcard_without_credentials_answers_star_without_vary() {
        let p = policy(&["*"], false);
        let mut h = HeaderMap::new();
        p.apply(Some("https://anyone.example"), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(h.get(header::VARY).is_none());
    }
}
