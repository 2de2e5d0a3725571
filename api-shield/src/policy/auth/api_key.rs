//! API keys: taken from a header (or a query parameter where a route allows it), known only by
//! their SHA-256, each with an id, scopes and an optional expiry.
//!
//! The lookup hashes the presented key and finds the entry by that digest; the timing of that
//! lookup depends only on the digest of what the client sent, which tells it nothing about
//! stored keys. The stored digest is then compared in constant time.

use std::{collections::HashMap, sync::Arc};

use http::HeaderName;

use super::Principal;
use crate::config::{problem, ApiKeysConfig, Problem};

/// The known keys.
#[derive(Debug)]
pub struct ApiKeys {
    header: HeaderName,
    by_digest: HashMap<[u8; 32], Entry>,
}

#[derive(Debug)]
struct Entry {
    id: Arc<str>,
    digest: [u8; 32],
    scopes: Arc<[String]>,
    expires_unix: Option<u64>,
}

/// Why a presented key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key has this hash.
    Unknown,
    /// The key is past its expiry.
    Expired,
}

impl ApiKeys {
    /// Compiles `[api_keys]`.
    pub fn compile(config: &ApiKeysConfig) -> Result<ApiKeys, Problem> {
        let header = HeaderName::try_from(config.header.as_str())
            .map_err(|_| problem("api_keys.header", "not a header name"))?;
        let mut by_digest = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for (i, key) in config.keys.iter().enumerate() {
            let at = format!("api_keys.keys[{i}]");
            if key.id.is_empty() || !ids.insert(key.id.as_str()) {
                return Err(problem(
                    format!("{at}.id"),
                    "ids must be unique and not empty",
                ));
            }
            let digest = parse_hex_digest(&key.sha256).ok_or_else(|| {
                problem(
                    format!("{at}.sha256"),
                    "must be 64 hex digits (the SHA-256 of the key; `api-shield key new` prints it)",
                )
            })?;
            let expires_unix = key
                .expires
                .as_deref()
                .map(|t| super::super::time::parse_rfc3339(t, &format!("{at}.expires")))
                .transpose()?;
            if by_digest
                .insert(
                    digest,
                    Entry {
                        id: key.id.as_str().into(),
                        digest,
                        scopes: key.scopes.clone().into(),
                        expires_unix,
                    },
                )
                .is_some()
            {
                return Err(problem(
                    format!("{at}.sha256"),
                    "the same key is listed twice",
                ));
            }
        }
        Ok(ApiKeys { header, by_digest })
    }

    /// The header keys come in.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The principal of a presented key at `now_unix` seconds.
    pub fn authenticate(&self, presented: &[u8], now_unix: u64) -> Result<Principal, KeyRefusal> {
        let digest = sha256(presented);
        let entry = self.by_digest.get(&digest).ok_or(KeyRefusal::Unknown)?;
        #[allow(deprecated)] // ring keeps this as its constant-time comparison.
        ring::constant_time::verify_slices_are_equal(&entry.digest, &digest)
            .map_err(|_| KeyRefusal::Unknown)?;
        if entry
            .expires_unix
            .is_some_and(|expires| now_unix >= expires)
        {
            return Err(KeyRefusal::Expired);
        }
        Ok(Principal::ApiKey {
            id: Arc::clone(&entry.id),
            scopes: Arc::clone(&entry.scopes),
        })
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn parse_hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyEntry;

    fn keys() -> ApiKeys {
        ApiKeys::compile(&ApiKeysConfig {
            header: "X-API-Key".into(),
            keys: vec![
                ApiKeyEntry {
                    id: "ci".into(),
                    sha256: hex(&sha256(b"secret-one")),
                    scopes: vec!["orders:read".into()],
                    expires: None,
                },
                ApiKeyEntry {
                    id: "old".into(),
                    sha256: hex(&sha256(b"secret-two")),
                    scopes: vec![],
                    expires: Some("2026-01-01T00:00:00Z".into()),
                },
            ],
        })
        .unwrap()
    }

    #[test]
    fn right_wrong_and_expired_keys() {
        let keys = keys();
        let now = 1_760_000_000; // 2025-10
        match keys.authenticate(b"secret-one", now).unwrap() {
            Principal::ApiKey { id, scopes } => {
                assert_eq!(&*id, "ci");
                assert_eq!(&*scopes, ["orders:read".to_owned()]);
            }
            Principal::Token(_) => panic!("an API key principal"),
        }
        assert_eq!(
            keys.authenticate(b"secret-onE", now).unwrap_err(),
            KeyRefusal::Unknown
        );
        assert!(keys.authenticate(b"secret-two", now).is_ok());
        assert_eq!(
            keys.authenticate(b"secret-two", 1_767_225_600).unwrap_err(),
            KeyRefusal::Expired
        );
    }

    #[test]
    fn bad_entries_name_their_key() {
        let mut config = ApiKeysConfig::default();
        config.keys.push(ApiKeyEntry {
            id: "x".into(),
            sha256: "abc".into(),
            scopes: vec![],
            expires: None,
        });
        assert_eq!(
            ApiKeys::compile(&config).unwrap_err().key,
            "api_keys.keys[0].sha256"
        );
        config.keys[0].sha256 = hex(&sha256(b"k"));
        config.keys[0].expires = Some("next week".into());
        assert_eq!(
            ApiKeys::compile(&config).unwrap_err().key,
            "api_keys.keys[0].expires"
        );
    }
}
