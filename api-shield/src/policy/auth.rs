//! Who is calling: bearer tokens of the route's issuers or API keys, then whether the caller
//! holds the scopes the route requires. A route with `auth` refuses anonymous requests (401);
//! valid credentials without the scope get 403.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod jwt_keys;
pub mod token_cache;

use std::{collections::HashMap, sync::Arc};

use base64::Engine as _;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use self::{
    api_key::{ApiKeys, KeyRefusal},
    jwt::{Issuer, TokenError},
};
use super::clock::{unix_seconds, SharedClock};
use crate::{
    config::{problem, Problem, RouteAuthConfig, ScopesMatch},
    refusal::{Advice, Denial, Refusal},
};

/// A verified token.
#[derive(Debug)]
pub struct TokenPrincipal {
    /// The issuer's config name.
    pub issuer: Arc<str>,
    /// `sub`.
    pub subject: Option<String>,
    /// `exp`.
    pub expires_unix: u64,
    /// `nbf`.
    pub not_before_unix: Option<u64>,
    /// `iat`.
    pub issued_unix: Option<u64>,
    /// Headers made from forwarded claims.
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
    /// All claims.
    pub claims: Map<String, Value>,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A bearer token.
    Token(Arc<TokenPrincipal>),
    /// An API key.
    ApiKey {
        /// The key's id.
        id: Arc<str>,
        /// Its scopes.
        scopes: Arc<[String]>,
    },
}

/// A route's auth, compiled.
#[derive(Debug)]
pub struct Auth {
    issuers: Vec<Arc<Issuer>>,
    api_keys: Option<Arc<ApiKeys>>,
    query_param: Option<String>,
    scopes: Vec<String>,
    scopes_match: ScopesMatch,
    scope_claim: Option<String>,
    clock: SharedClock,
    /// `WWW-Authenticate` for a request without acceptable credentials (header text).
    challenge: Arc<str>,
}

impl Auth {
    /// Compiles a route's `auth` (found at `key`).
    pub fn compile(
        config: &RouteAuthConfig,
        key: &str,
        issuers: &HashMap<String, Arc<Issuer>>,
        api_keys: &Arc<ApiKeys>,
        clock: SharedClock,
    ) -> Result<Auth, Problem> {
        let mut chosen = Vec::new();
        for name in &config.jwt {
            let issuer = issuers.get(name).ok_or_else(|| {
                problem(format!("{key}.jwt"), format!("no issuer is named `{name}`"))
            })?;
            chosen.push(Arc::clone(issuer));
        }
        if chosen.is_empty() && !config.api_key {
            return Err(problem(
                key,
                "name issuers in `jwt` or set `api_key = true`: a route with auth accepts some credential",
            ));
        }
        if config.api_key_query.is_some() && !config.api_key {
            return Err(problem(
                format!("{key}.api_key_query"),
                "only with `api_key = true`",
            ));
        }
        let challenge = if chosen.is_empty() {
            format!(
                "ApiKey realm=\"api-shield\", header=\"{}\"",
                api_keys.header()
            )
        } else {
            "Bearer realm=\"api-shield\"".to_owned()
        };
        Ok(Auth {
            issuers: chosen,
            api_keys: config.api_key.then(|| Arc::clone(api_keys)),
            query_param: config.api_key_query.clone(),
            scopes: config.scopes.clone(),
            scopes_match: config.scopes_match,
            scope_claim: config.scope_claim.clone(),
            clock,
            // A header name in quotes is header text.
            challenge: Arc::from(challenge),
        })
    }

    /// The query parameter this route takes keys from, to keep it from the upstream.
    pub fn query_param(&self) -> Option<&str> {
        self.query_param.as_deref()
    }

    /// Authenticates and authorizes the request.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Principal, Refusal> {
        let principal = self.authenticate(headers, query).await?;
        self.authorize(&principal)?;
        Ok(principal)
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Principal, Refusal> {
        self.one_credential(headers, query)?;
        if !self.issuers.is_empty() {
            if let Some(token) = bearer(headers) {
                return self.verify_token(token).await.map(Principal::Token);
            }
        }
        if let Some(keys) = &self.api_keys {
            let presented = headers
                .get(keys.header())
                .map(|v| v.as_bytes().to_vec())
                .or_else(|| {
                    let name = self.query_param.as_deref()?;
                    query_value(query?, name)
                });
            if let Some(presented) = presented {
                return keys
                    .authenticate(&presented, unix_seconds(&*self.clock))
                    .map_err(|refusal| {
                        tracing::debug!(?refusal, "API key refused");
                        Refusal::new(Denial::InvalidApiKey)
                            .detail(match refusal {
                                KeyRefusal::Unknown => "The API key is not known",
                                KeyRefusal::Expired => "The API key has expired",
                            })
                            .advise(Advice::Challenge(Arc::clone(&self.challenge)))
                    });
            }
        }
        Err(Refusal::new(Denial::Unauthenticated)
            .advise(Advice::Challenge(Arc::clone(&self.challenge))))
    }

    /// Refuses a request that presents more than one credential this route could check (a
    /// bearer token and an API key, a key in the header and in the query, the key parameter
    /// twice): only one would be checked, and the upstream would get them all.
    fn one_credential(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        let token = !self.issuers.is_empty() && bearer(headers).is_some();
        let (header_key, query_keys) = match &self.api_keys {
            Some(keys) => (
                headers.contains_key(keys.header()),
                match (self.query_param.as_deref(), query) {
                    (Some(name), Some(query)) => query
                        .split('&')
                        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) == name)
                        .count(),
                    _ => 0,
                },
            ),
            None => (false, 0),
        };
        if usize::from(token) + usize::from(header_key) + query_keys > 1 {
            return Err(Refusal::new(Denial::InvalidRequest)
                .detail("More than one credential: send exactly one bearer token or API key"));
        }
        Ok(())
    }

    async fn verify_token(&self, token: &str) -> Result<Arc<TokenPrincipal>, Refusal> {
        let invalid = |error: TokenError| {
            tracing::debug!(%error, "bearer token refused");
            Refusal::new(Denial::InvalidToken)
                .detail(match error {
                    TokenError::Expired => "The token has expired",
                    TokenError::NotYetValid | TokenError::IssuedInFuture => {
                        "The token is not valid yet"
                    }
                    _ => "The token could not be verified",
                })
                .advise(Advice::Challenge(Arc::from(
                    "Bearer realm=\"api-shield\", error=\"invalid_token\"",
                )))
        };
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(invalid(TokenError::TooLong));
        }
        let issuer = match self.issuers.as_slice() {
            [only] => only,
            several => {
                let iss = unverified_issuer(token).ok_or_else(|| invalid(TokenError::Malformed))?;
                several
                    .iter()
                    .find(|i| i.iss() == iss)
                    .ok_or_else(|| invalid(TokenError::Issuer))?
            }
        };
        issuer.verify(token).await.map_err(invalid)
    }

    fn authorize(&self, principal: &Principal) -> Result<(), Refusal> {
        if self.scopes.is_empty() {
            return Ok(());
        }
        let held: Vec<&str> = match principal {
            Principal::ApiKey { scopes, .. } => scopes.iter().map(String::as_str).collect(),
            Principal::Token(token) => {
                let claim = self.scope_claim.as_deref().unwrap_or_else(|| {
                    self.issuers
                        .iter()
                        .find(|i| i.name == token.issuer)
                        .map_or("scope", |i| i.scope_claim.as_str())
                });
                match token.claims.get(claim) {
                    Some(Value::String(s)) => s.split_ascii_whitespace().collect(),
                    Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                }
            }
        };
        let has = |scope: &String| held.contains(&scope.as_str());
        let allowed = match self.scopes_match {
            ScopesMatch::All => self.scopes.iter().all(has),
            ScopesMatch::Any => self.scopes.iter().any(has),
        };
        if allowed {
            return Ok(());
        }
        let mut refusal = Refusal::new(Denial::InsufficientScope);
        if matches!(principal, Principal::Token(_)) {
            refusal = refusal.advise(Advice::Challenge(Arc::from(format!(
                "Bearer realm=\"api-shield\", error=\"insufficient_scope\", scope=\"{}\"",
                self.scopes.join(" ")
            ))));
        }
        Err(refusal)
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `iss` of a token, read without verifying it (only to pick the issuer that will).
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|i| i.iss)
}

/// The percent-decoded value of query parameter `name`.
fn query_value(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode(value))
    })
}

/// Percent-decoding (and `+` as space) of a query component.
pub fn percent_decode(text: &str) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// `query` without parameter `name` (so an API key in the query never reaches the upstream).
pub fn without_query_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_helpers() {
        assert_eq!(
            query_value("a=1&api_key=x%2By+z", "api_key").unwrap(),
            b"x+y z"
        );
        assert_eq!(query_value("a=1", "api_key"), None);
        assert_eq!(
            without_query_param("a=1&api_key=s&b=2", "api_key"),
            "a=1&b=2"
        );
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%zz"), b"%zz");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
