//! Response-side headers the shield owns: HSTS (on HTTPS responses only), the default security
//! headers, no `Server` banner, and removal of hop-by-hop headers in both directions.

use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::ProxyConfig;

/// Compiled response header settings.
#[derive(Debug, Clone)]
pub struct ResponseHeaders {
    hsts: Option<HeaderValue>,
    security: bool,
}

impl ResponseHeaders {
    /// From the `[proxy]` settings.
    pub fn new(config: &ProxyConfig) -> ResponseHeaders {
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

    /// Applies them to a response; `https` says whether it goes out over TLS.
    pub fn apply(&self, headers: &mut HeaderMap, https: bool) {
        headers.remove(header::SERVER);
        headers.remove("x-powered-by");
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
            if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
                headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("frame-ancestors 'none'"),
                );
            }
            if !headers.contains_key(header::REFERRER_POLICY) {
                headers.insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                );
            }
        }
    }
}

/// Removes hop-by-hop headers (RFC 9110 section 7.6.1), including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove("http2-settings");
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
    }
}
