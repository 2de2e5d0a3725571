//! Bearer tokens (JWT) of one issuer: algorithm allowlist, keys by `kid` or type, signature
//! check (cached), then `iss`, `aud`, `exp`, `nbf` and `iat` against the policy clock with a
//! leeway.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{errors::ErrorKind, Algorithm, Header};
use serde_json::{Map, Value};

use super::{
    jwks::Jwks,
    jwt_keys::{self, KeyError, VerifyKey},
    token_cache::TokenCache,
    TokenPrincipal,
};
use crate::{
    config::{problem, IssuerConfig, Problem, Source},
    policy::clock::{unix_seconds, SharedClock},
};

/// Longest token considered (longer ones are refused unread).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verified tokens cached per issuer.
const CACHE_ENTRIES: usize = 10_000;
/// The bytes of the tokens each issuer's cache holds at most: 10 000 tokens of 800 bytes (an
/// RS256 token with a few claims is ~600).
const CACHE_TOKEN_BYTES: usize = 8 << 20;

/// Why a token is refused (logged; never sent to the client beyond `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token too long")]
    TooLong,
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// An algorithm the issuer does not accept (including `none`).
    #[error("algorithm not accepted")]
    Algorithm,
    /// No key matches its `kid` or algorithm.
    #[error("no key for this token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Its `iss` is not the issuer's.
    #[error("wrong issuer")]
    Issuer,
    /// No accepted audience.
    #[error("wrong audience")]
    Audience,
    /// No `exp` claim.
    #[error("no expiry")]
    MissingExpiry,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// Before `nbf`.
    #[error("not yet valid")]
    NotYetValid,
    /// `iat` in the future.
    #[error("issued in the future")]
    IssuedInFuture,
    /// Its header asks for an extension this verifier does not implement: any `crit`
    /// (RFC 7515 section 4.1.11: a recipient must reject a token whose critical extensions it
    /// does not understand, and this one understands none), or `b64: false` (RFC 7797's
    /// unencoded payload, which the signature would then not cover as verified here).
    #[error("unsupported critical header parameter")]
    UnsupportedHeader,
}

/// The keys in use and their generation (a cache entry is valid for one generation).
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<VerifyKey>,
    generation: u64,
}

/// One issuer, compiled.
#[derive(Debug)]
pub struct Issuer {
    /// Its config name.
    pub name: Arc<str>,
    iss: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    static_keys: Vec<VerifyKey>,
    keys: ArcSwap<KeySet>,
    jwks: Option<Jwks>,
    /// The claim scopes are read from by default.
    pub scope_claim: String,
    forward: Vec<(String, HeaderName)>,
    cache: TokenCache,
    clock: SharedClock,
}

impl Issuer {
    /// Compiles `[[issuers]]` entry `index`, loading its key files.
    pub fn compile(
        config: &IssuerConfig,
        index: usize,
        source: &Source,
        clock: SharedClock,
    ) -> Result<Issuer, Problem> {
        let at = format!("issuers[{index}]");
        let mut algorithms = Vec::new();
        for name in &config.algorithms {
            let alg = jwt_keys::parse_algorithm(name).ok_or_else(|| {
                problem(
                    format!("{at}.algorithms"),
                    format!("`{name}` is not accepted; use HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 or EdDSA"),
                )
            })?;
            algorithms.push(alg);
        }
        let key_problem =
            |field: &str, e: KeyError| problem(format!("{at}.{field}"), e.to_string());
        let mut static_keys = Vec::new();
        for path in &config.keys {
            static_keys.push(
                jwt_keys::from_pem_file(&source.resolve(path), &algorithms)
                    .map_err(|e| key_problem("keys", e))?,
            );
        }
        if let Some(path) = &config.jwks_file {
            let path = source.resolve(path);
            let text = std::fs::read(&path)
                .map_err(|e| key_problem("jwks_file", KeyError::Read { path, source: e }))?;
            static_keys.extend(
                jwt_keys::from_jwks(&text, &algorithms, true)
                    .map_err(|e| key_problem("jwks_file", e))?,
            );
        }
        let secret_file = config.secret_file.as_ref().map(|p| source.resolve(p));
        if let Some(key) = jwt_keys::secret(
            secret_file.as_deref(),
            config.secret_env.as_deref(),
            &algorithms,
        )
        .map_err(|e| {
            key_problem(
                if config.secret_file.is_some() {
                    "secret_file"
                } else {
                    "secret_env"
                },
                e,
            )
        })? {
            static_keys.push(key);
        }
        let jwks = config
            .jwks_url
            .as_deref()
            .map(|url| Jwks::new(url, config.jwks_refresh, config.jwks_refetch_cooldown))
            .transpose()
            .map_err(|e| problem(format!("{at}.jwks_url"), e.to_string()))?;
        if jwks.is_some() {
            for result in ["success", "failure"] {
                crate::telemetry::metrics()
                    .jwks_fetches
                    .with_label_values(&[config.name.as_str(), result]);
            }
        }
        if static_keys.is_empty() && jwks.is_none() {
            return Err(problem(
                format!("{at}.algorithms"),
                "no key fits these algorithms: give keys, jwks_file, jwks_url, secret_file or secret_env",
            ));
        }
        let forward = config
            .forward_claims
            .iter()
            .map(|(claim, header)| {
                HeaderName::try_from(header.as_str())
                    .map(|h| (claim.clone(), h))
                    .map_err(|_| {
                        problem(
                            format!("{at}.forward_claims.{claim}"),
                            format!("`{header}` is not a header name"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Issuer {
            name: config.name.as_str().into(),
            iss: config.issuer.clone(),
            audiences: config.audiences.clone(),
            algorithms,
            leeway: config.leeway.as_secs(),
            keys: ArcSwap::from_pointee(KeySet {
                keys: static_keys.clone(),
                generation: 0,
            }),
            static_keys,
            jwks,
            scope_claim: config.scope_claim.clone(),
            forward,
            cache: TokenCache::new(CACHE_ENTRIES, CACHE_TOKEN_BYTES),
            clock,
        })
    }

    /// The `iss` it accepts.
    pub fn iss(&self) -> &str {
        &self.iss
    }

    /// Header names its forwarded claims use (stripped from client requests).
    pub fn forwarded_headers(&self) -> impl Iterator<Item = &HeaderName> {
        self.forward.iter().map(|(_, h)| h)
    }

    /// Its JWK set URL source, if it has one.
    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_ref()
    }

    /// Tokens in the verification cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Replaces the fetched keys: a new generation, and the cache starts over.
    pub fn install_fetched(&self, fetched: Vec<VerifyKey>) {
        let generation = self.keys.load().generation + 1;
        let mut keys = self.static_keys.clone();
        keys.extend(fetched);
        self.keys.store(Arc::new(KeySet { keys, generation }));
        self.cache.clear();
    }

    /// The algorithms it accepts.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Verifies a token: signature (or the cache), then claims.
    pub async fn verify(&self, token: &str) -> Result<Arc<TokenPrincipal>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let generation = self.keys.load().generation;
        if let Some(principal) = self.cache.get(token, generation) {
            self.check_times(&principal)?;
            return Ok(principal);
        }
        // Boxed: a miss is rare under load, and inline its state would make every request's
        // future (moved whole by the HTTP server) bigger by a kilobyte.
        let (generation, principal) = Box::pin(self.verify_uncached(token)).await?;
        self.cache.insert(
            token,
            generation,
            Arc::clone(&principal),
            unix_seconds(&*self.clock),
        );
        Ok(principal)
    }

    /// Verifies a token without the cache (what a cache miss costs); gives the key-set
    /// generation it was verified under.
    pub async fn verify_uncached(
        &self,
        token: &str,
    ) -> Result<(u64, Arc<TokenPrincipal>), TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let set = self.keys.load_full();
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        check_extensions(token)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let kid_unknown = header
            .kid
            .as_deref()
            .is_some_and(|kid| !set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let (set, claims) = match (verify_with(&set, token, &header), &self.jwks) {
            (Ok(claims), _) => (set, claims),
            // A kid never seen: perhaps the issuer rotated keys. One fetch, unless one
            // happened within the cooldown.
            (Err(_), Some(jwks)) if kid_unknown => {
                if !jwks.refetch(self).await {
                    return Err(TokenError::UnknownKey);
                }
                let set = self.keys.load_full();
                let claims = verify_with(&set, token, &header)?;
                (set, claims)
            }
            (Err(error), _) => return Err(error),
        };
        let principal = Arc::new(self.principal(claims)?);
        self.check_times(&principal)?;
        Ok((set.generation, principal))
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<TokenPrincipal, TokenError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.iss.as_str()) {
            return Err(TokenError::Issuer);
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.iter().any(|a| a == aud),
            Some(Value::Array(auds)) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|aud| self.audiences.iter().any(|a| a == aud)),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Audience);
        }
        let time = |name: &str| claims.get(name).and_then(Value::as_u64);
        let expires_unix = time("exp").ok_or(TokenError::MissingExpiry)?;
        let forwarded = self
            .forward
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" "),
                    Value::Null | Value::Object(_) => return None,
                    other => other.to_string(),
                };
                HeaderValue::from_str(&text)
                    .ok()
                    .map(|v| (header.clone(), v))
            })
            .collect();
        Ok(TokenPrincipal {
            issuer: Arc::clone(&self.name),
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            expires_unix,
            not_before_unix: time("nbf"),
            issued_unix: time("iat"),
            forwarded,
            claims,
        })
    }

    fn check_times(&self, principal: &TokenPrincipal) -> Result<(), TokenError> {
        let now = unix_seconds(&*self.clock);
        if now >= principal.expires_unix.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if principal
            .not_before_unix
            .is_some_and(|nbf| nbf > now + self.leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        if principal
            .issued_unix
            .is_some_and(|iat| iat > now + self.leeway)
        {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

/// The claims of `token` if one of the keys for its `kid` (or, without one, for its
/// algorithm) verifies it.
fn verify_with(
    set: &KeySet,
    token: &str,
    header: &Header,
) -> Result<Map<String, Value>, TokenError> {
    let candidates = set.keys.iter().filter(|key| match &header.kid {
        // A key with this kid; keys without a kid are tried by algorithm.
        Some(kid) if key.kid.is_some() => key.kid.as_deref() == Some(kid.as_str()),
        _ => key.validation.algorithms.contains(&header.alg),
    });
    let mut error = TokenError::UnknownKey;
    for key in candidates {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => match e.kind() {
                ErrorKind::InvalidAlgorithm => {
                    if error == TokenError::UnknownKey {
                        error = TokenError::Algorithm;
                    }
                }
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => error = TokenError::Signature,
                _ => return Err(TokenError::Malformed),
            },
        }
    }
    Err(error)
}

/// Refuses a token whose header uses `crit` or `b64: false`, which `jsonwebtoken`'s header type
/// does not carry (it ignores members it does not know), so the header is read again here as
/// JSON. Runs only when a token is not in the cache.
fn check_extensions(token: &str) -> Result<(), TokenError> {
    use base64::Engine as _;
    let encoded = token.split('.').next().ok_or(TokenError::Malformed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| TokenError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    if header.contains_key("crit")
        || header
            .get("b64")
            .is_some_and(|b64| b64 != &Value::Bool(true))
    {
        return Err(TokenError::UnsupportedHeader);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
