//! Response-side headers the shield owns: HSTS (on HTTPS responses only), the default security
//! headers, no `Server` banner, and removal of hop-by-hop headers in both directions.

use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::ProxyConfig;

/// Compiled response header settings.
#[derive(Debug, Clone)]
pub(crate) struct ResponseHeaders {
    hsts: Option<HeaderValue>,
    security: bool,
}

impl ResponseHeaders {
    /// From the `[proxy]` settings.
    pub(crate) fn new(config: &ProxyConfig) -> ResponseHeaders {
        let hsts = config.hsts.enabled.then(|| {
            let mut value = format!("max-age={}", config.hsts.max_age.as_secs());
            if config.hsts.include_subdomains {
                value.push_str("; includeSubDomains");
            }
            if config.hsts.preload {
                value.push_str("; preload");
            }
            HeaderValue::from_str(&value).expect("HSTS value is ASCII")
        });
        ResponseHeaders {
            hsts,
            security: config.security_headers,
        }
    }

    /// Applies them to a response; `https` says whether it goes out over TLS. Banners are
    /// looked for in one pass and removed only when present (each removal hashes a name).
    pub(crate) fn apply(&self, headers: &mut HeaderMap, https: bool) {
        let (mut server, mut powered_by) = (false, false);
        for name in headers.keys() {
            server |= name == header::SERVER;
            powered_by |= name == X_POWERED_BY;
        }
        if server {
            headers.remove(header::SERVER);
        }
        if powered_by {
            headers.remove(X_POWERED_BY);
        }
        // Room for the headers below at once, rather than growing the map twice.
        headers.reserve(4);
        if https {
            if let Some(hsts) = &self.hsts {
                headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
        }
        if self.security {
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers
                .entry(header::CONTENT_SECURITY_POLICY)
                .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
            headers
                .entry(header::REFERRER_POLICY)
                .or_insert(HeaderValue::from_static("no-referrer"));
        }
    }
}

/// A banner some upstreams send, removed like `Server`.
const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Removes hop-by-hop headers (RFC 9110 section 7.6.1), including those `Connection` names.
/// Most messages carry few or none of them, so the names are found in one pass over the map
/// and only those present are removed (each removal hashes a name). The usual `Connection`
/// options, `keep-alive` and `close`, name no other header to look for, and a message with a
/// single hop-by-hop header (typically `Connection: keep-alive`) allocates nothing.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut first = None;
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys().filter(|name| is_hop_by_hop(name)) {
        if first.is_none() {
            first = Some(name.clone());
        } else {
            doomed.push(name.clone());
        }
    }
    let Some(first) = first else {
        return;
    };
    for option in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if option.eq_ignore_ascii_case("keep-alive") || option.eq_ignore_ascii_case("close") {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(option.as_bytes()) {
            doomed.push(name);
        }
    }
    headers.remove(first);
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes the headers a client's `Connection` nominates as hop-by-hop, before the shield reads
/// the request or adds headers of its own (which a nomination must never remove). Nominations
/// of headers the shield relies on (`kept`: credentials, the headers it writes) are ignored,
/// so what it judges is what the upstream gets. `Connection` is left with its connection
/// options only (`keep-alive`, `close`, `upgrade`), so that no later removal acts on the
/// client's word. A request without `Connection` costs one lookup.
pub(crate) fn strip_nominated(headers: &mut HeaderMap, kept: impl Fn(&HeaderName) -> bool) {
    if !headers.contains_key(header::CONNECTION) {
        return;
    }
    let mut options: Vec<&'static str> = Vec::new();
    let mut nominated: Vec<HeaderName> = Vec::new();
    for token in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if let Some(option) = ["keep-alive", "close", "upgrade"]
            .into_iter()
            .find(|o| token.eq_ignore_ascii_case(o))
        {
            if !options.contains(&option) {
                options.push(option);
            }
        } else if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            if !kept(&name) && !is_hop_by_hop(&name) {
                nominated.push(name);
            }
        }
    }
    for name in nominated {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if !options.is_empty() {
        let value = HeaderValue::from_str(&options.join(", ")).expect("options are ASCII");
        headers.insert(header::CONNECTION, value);
    }
}

/// Whether a header only concerns one connection.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
            | "http2-settings"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_only_over_tls_and_no_banner() {
        let h = ResponseHeaders::new(&ProxyConfig::default());
        let mut plain = HeaderMap::new();
        plain.insert(header::SERVER, HeaderValue::from_static("nginx"));
        h.apply(&mut plain, false);
        assert!(plain.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        assert!(plain.get(header::SERVER).is_none());
        assert_eq!(plain[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let mut tls = HeaderMap::new();
        h.apply(&mut tls, true);
        assert_eq!(
            tls[header::STRICT_TRANSPORT_SECURITY],
            "max-age=31536000; includeSubDomains"
        );
    }

    #[test]
    fn hop_by_hop_headers_go_including_those_connection_names() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));

        // Each kind alone, and a `Connection` naming a header with no other hop-by-hop one.
        for name in [
            "connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "keep-alive",
            "proxy-connection",
            "http2-settings",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.keys().collect::<Vec<_>>(), [header::ACCEPT], "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.append(header::ACCEPT, HeaderValue::from_static("a"));
        h.append(header::ACCEPT, HeaderValue::from_static("b"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all(header::ACCEPT).iter().count(), 2);
    }

    #[test]
    fn nominations_go_before_the_shield_adds_its_headers_and_never_take_kept_ones() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private, Authorization"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-auth-subject, Upgrade"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let kept = |name: &HeaderName| name == header::AUTHORIZATION || name == "x-auth-subject";
        strip_nominated(&mut h, kept);
        assert!(!h.contains_key("x-private"));
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
        assert_eq!(h[header::CONNECTION], "keep-alive, upgrade");
        // Headers the shield adds afterwards survive the final hop-by-hop removal.
        h.insert("x-auth-subject", HeaderValue::from_static("alice"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h["x-auth-subject"], "alice");
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
        // Nothing to do without Connection.
        let mut plain = HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_nominated(&mut plain, kept);
        assert_eq!(plain.len(), 1);
    }
}
