//! The patterns a config names, parsed when it is read and matched per request: route paths
//! (`/health` exactly; `/api/*`, `/api` and everything under `/api/`; `/users/{id}`, one
//! non-empty segment per parameter), route hosts (`api.example.com` exactly, case-insensitive,
//! or `*.example.com` for any subdomain) and CORS origins. A leaf: the config holds them typed,
//! routing and CORS match with them, and neither imports the other.

use std::fmt;

use serde::Deserialize;

/// A route pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// How a route matches the path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum PathPattern {
    /// This path only.
    Exact(String),
    /// This path (without its trailing slash) and everything under it.
    Prefix(String),
    /// Literal segments and one-segment parameters.
    Template(Vec<Segment>),
}

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Must be equal.
    Literal(String),
    /// Any non-empty segment, captured under this name.
    Param(String),
}

impl PathPattern {
    /// Compiles `/exact`, `/prefix/*` or `/template/{param}`.
    pub fn parse(pattern: &str) -> Result<PathPattern, PatternError> {
        let err = |reason| PatternError {
            pattern: pattern.to_owned(),
            reason,
        };
        if !pattern.starts_with('/') {
            return Err(err("must start with /"));
        }
        if let Some(prefix) = pattern.strip_suffix("/*") {
            if prefix.contains(['*', '{', '}']) {
                return Err(err("`*` may only end a prefix pattern (`/api/*`)"));
            }
            return Ok(PathPattern::Prefix(format!("{prefix}/")));
        }
        if pattern.contains('*') {
            return Err(err("`*` may only end a prefix pattern (`/api/*`)"));
        }
        if !pattern.contains(['{', '}']) {
            return Ok(PathPattern::Exact(pattern.to_owned()));
        }
        let mut segments = Vec::new();
        for part in pattern.split('/').skip(1) {
            if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(err("a parameter is `{name}`, alone in its segment"));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else if part.contains(['{', '}']) {
                return Err(err("a parameter is `{name}`, alone in its segment"));
            } else {
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(PathPattern::Template(segments))
    }

    /// Parameters captured when `path` matches.
    pub(crate) fn captures(&self, path: &str) -> Option<Vec<(String, String)>> {
        match self {
            PathPattern::Exact(exact) => (path == exact).then(Vec::new),
            PathPattern::Prefix(prefix) => (path.starts_with(prefix.as_str())
                || path == &prefix[..prefix.len() - 1])
                .then(Vec::new),
            PathPattern::Template(segments) => {
                let parts: Vec<&str> = path.split('/').skip(1).collect();
                if parts.len() != segments.len() {
                    return None;
                }
                let mut params = Vec::new();
                for (segment, part) in segments.iter().zip(parts) {
                    match segment {
                        Segment::Literal(literal) if literal == part => {}
                        Segment::Param(name) if !part.is_empty() => {
                            params.push((name.clone(), part.to_owned()));
                        }
                        _ => return None,
                    }
                }
                Some(params)
            }
        }
    }
}

/// How a route matches the host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum HostPattern {
    /// This host name (lower case).
    Exact(String),
    /// Any subdomain of this suffix (stored with its leading dot, lower case).
    Subdomains(String),
}

impl HostPattern {
    /// Compiles `api.example.com` or `*.example.com`.
    pub fn parse(pattern: &str) -> Result<HostPattern, PatternError> {
        let lower = pattern.to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(PatternError {
                    pattern: pattern.to_owned(),
                    reason: "a wildcard host is `*.example.com`",
                });
            }
            return Ok(HostPattern::Subdomains(format!(".{suffix}")));
        }
        if lower.is_empty() || lower.contains(['*', '/', ' ']) {
            return Err(PatternError {
                pattern: pattern.to_owned(),
                reason: "not a host name",
            });
        }
        Ok(HostPattern::Exact(lower))
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// An origin pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginError {
    /// The pattern.
    pub origin: String,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not an origin: use scheme://host[:port], scheme://*.domain[:port] or *",
            self.origin
        )
    }
}

impl std::error::Error for OriginError {}

/// One allowed origin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum OriginPattern {
    /// Every origin.
    Any,
    /// This origin (lower case, as a browser sends it).
    Exact(String),
    /// Any subdomain of `suffix` (with its leading dot) with this scheme and port suffix.
    Subdomains {
        /// `https://`.
        scheme: String,
        /// `.example.com`.
        suffix: String,
        /// `:8443` or empty.
        port: String,
    },
}

impl OriginPattern {
    /// Parses `https://app.example.com`, `https://*.example.com:8443` or `*`.
    pub fn parse(text: &str) -> Result<OriginPattern, OriginError> {
        if text == "*" {
            return Ok(OriginPattern::Any);
        }
        let bad = || OriginError {
            origin: text.to_owned(),
        };
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(bad)?;
        if !matches!(scheme, "http" | "https")
            || rest.is_empty()
            || rest.contains(['/', '?', '#', ' '])
        {
            return Err(bad());
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                port.parse::<u16>().map_err(|_| bad())?;
                (host, format!(":{port}"))
            }
            _ => (rest, String::new()),
        };
        if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(bad());
            }
            return Ok(OriginPattern::Subdomains {
                scheme: format!("{scheme}://"),
                suffix: format!(".{suffix}"),
                port,
            });
        }
        if host.is_empty() || host.contains('*') {
            return Err(bad());
        }
        Ok(OriginPattern::Exact(lower))
    }

    pub(crate) fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Any => true,
            OriginPattern::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            OriginPattern::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                let origin = origin.to_ascii_lowercase();
                let Some(rest) = origin.strip_prefix(scheme.as_str()) else {
                    return false;
                };
                let Some(host) = rest.strip_suffix(port.as_str()) else {
                    return false;
                };
                host.len() > suffix.len() && host.ends_with(suffix.as_str()) && !host.contains(':')
            }
        }
    }
}

impl TryFrom<String> for PathPattern {
    type Error = PatternError;

    fn try_from(text: String) -> Result<PathPattern, PatternError> {
        PathPattern::parse(&text)
    }
}

impl TryFrom<String> for HostPattern {
    type Error = PatternError;

    fn try_from(text: String) -> Result<HostPattern, PatternError> {
        HostPattern::parse(&text)
    }
}

impl TryFrom<String> for OriginPattern {
    type Error = OriginError;

    fn try_from(text: String) -> Result<OriginPattern, OriginError> {
        OriginPattern::parse(&text)
    }
}
