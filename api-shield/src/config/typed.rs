//! Config values typed when the file is read, so a bad one is an error naming its key and line
//! and nothing downstream parses text again: socket addresses, upstream URLs, TLS versions and
//! cipher suites. (Route and origin patterns are `crate::pattern`'s; durations are
//! `model::duration`.)

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// An `address:port`, e.g. `"0.0.0.0:8443"` or `"[::]:8443"`.
pub(super) fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address:port (e.g. \"0.0.0.0:8443\")"
        ))
    })
}

/// An upstream's base URL: `http://` or `https://`, a host and an optional port, no path or
/// query (`"http://127.0.0.1:9000"`, `"https://api.internal:8443"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UpstreamUrl {
    /// `scheme://authority/`: where requests go (their path and query replace the `/`).
    pub base: http::Uri,
    /// Whether connections use TLS.
    pub https: bool,
    /// The `Host` a request without one is sent with: host and port, the port only when not
    /// the scheme's default; never user information the URL may carry.
    pub host: http::HeaderValue,
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(text: String) -> Result<UpstreamUrl, String> {
        let uri: http::Uri = text.parse().map_err(|_| format!("`{text}` is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("must start with http:// or https://".to_owned()),
        };
        let shape = "must be scheme://host:port with no path";
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(shape.to_owned());
        }
        let authority = uri.authority().cloned().ok_or(shape)?;
        let default_port = if https { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = http::HeaderValue::from_str(&host).map_err(|_| shape.to_owned())?;
        let base = http::Uri::builder()
            .scheme(if https { "https" } else { "http" })
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| shape.to_owned())?;
        Ok(UpstreamUrl { base, https, host })
    }
}

/// A TLS version a listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

/// An AEAD cipher suite with forward secrecy, by its IANA name (case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum CipherSuite {
    /// `TLS13_AES_256_GCM_SHA384`.
    Tls13Aes256GcmSha384,
    /// `TLS13_AES_128_GCM_SHA256`.
    Tls13Aes128GcmSha256,
    /// `TLS13_CHACHA20_POLY1305_SHA256`.
    Tls13Chacha20Poly1305Sha256,
    /// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`.
    EcdheEcdsaAes256GcmSha384,
    /// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
    EcdheEcdsaAes128GcmSha256,
    /// `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256`.
    EcdheEcdsaChacha20Poly1305Sha256,
    /// `TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384`.
    EcdheRsaAes256GcmSha384,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`.
    EcdheRsaAes128GcmSha256,
    /// `TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256`.
    EcdheRsaChacha20Poly1305Sha256,
}

impl CipherSuite {
    /// Every suite, with its IANA name.
    pub const ALL: [(CipherSuite, &'static str); 9] = [
        (
            CipherSuite::Tls13Aes256GcmSha384,
            "TLS13_AES_256_GCM_SHA384",
        ),
        (
            CipherSuite::Tls13Aes128GcmSha256,
            "TLS13_AES_128_GCM_SHA256",
        ),
        (
            CipherSuite::Tls13Chacha20Poly1305Sha256,
            "TLS13_CHACHA20_POLY1305_SHA256",
        ),
        (
            CipherSuite::EcdheEcdsaAes256GcmSha384,
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
        (
            CipherSuite::EcdheRsaAes256GcmSha384,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            CipherSuite::EcdheRsaAes128GcmSha256,
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            CipherSuite::EcdheRsaChacha20Poly1305Sha256,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ];
}

impl TryFrom<String> for CipherSuite {
    type Error = String;

    fn try_from(text: String) -> Result<CipherSuite, String> {
        CipherSuite::ALL
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(&text))
            .map(|(suite, _)| *suite)
            .ok_or_else(|| {
                let known: Vec<&str> = CipherSuite::ALL.iter().map(|(_, name)| *name).collect();
                format!("`{text}` is not one of {}", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_keep_host_and_port_and_refuse_paths() {
        let url = UpstreamUrl::try_from("https://api.internal:8443".to_owned()).unwrap();
        assert!(url.https);
        assert_eq!(url.host, "api.internal:8443");
        assert_eq!(url.base.to_string(), "https://api.internal:8443/");
        let url = UpstreamUrl::try_from("http://user:pw@127.0.0.1:80".to_owned()).unwrap();
        assert_eq!(url.host, "127.0.0.1");
        for (bad, says) in [
            ("ftp://x", "http:// or https://"),
            ("http://x/api", "no path"),
            ("http://x?q=1", "no path"),
            ("not a url", "not a URL"),
        ] {
            let error = UpstreamUrl::try_from(bad.to_owned()).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn cipher_suites_by_iana_name_in_any_case() {
        assert_eq!(
            CipherSuite::try_from("tls13_aes_128_gcm_sha256".to_owned()),
            Ok(CipherSuite::Tls13Aes128GcmSha256)
        );
        let error = CipherSuite::try_from("TLS_RSA_WITH_RC4_128_SHA".to_owned()).unwrap_err();
        assert!(
            error.contains("is not one of TLS13_AES_256_GCM_SHA384"),
            "{error}"
        );
    }
}
