//! Verification keys of an issuer: PEM public keys, JWK sets (file or fetched), and HMAC
//! secrets from a file or the environment. Each key is tied to the algorithms of its type that
//! the issuer allows (and to its JWK `alg`, if it names one), so a token cannot pick a key of
//! another type by naming another algorithm.

use std::{path::Path, str::FromStr};

use jsonwebtoken::{
    jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse},
    Algorithm, DecodingKey, Validation,
};

/// Shortest HMAC secret accepted (RFC 7518 asks for at least the hash size; 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// A key and the algorithms it verifies.
#[derive(Clone)]
pub struct VerifyKey {
    /// The `kid` it answers to, if any.
    pub kid: Option<String>,
    /// The key.
    pub key: DecodingKey,
    /// Algorithms (all of the key's type) and no claim checks: claims are checked by the
    /// issuer against its own clock.
    pub validation: Validation,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no RSA, EC or Ed25519 public key.
    #[error("{} holds no RSA, EC or Ed25519 public key in PEM", path.display())]
    NotAPublicKey {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A key's type matches none of the issuer's algorithms.
    #[error("a {family} key, but none of the issuer's algorithms is for {family} keys")]
    NoAlgorithm {
        /// The key type.
        family: &'static str,
    },
    /// A JWK set that does not parse.
    #[error("not a JWK set: {source}")]
    Jwks {
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A JWK whose parameters are unusable.
    #[error("JWK `{kid}` is unusable: {source}")]
    Jwk {
        /// Its kid (or `-`).
        kid: String,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// An HMAC secret that is too short.
    #[error("the HMAC secret has {len} bytes; use at least {MIN_SECRET_BYTES}")]
    ShortSecret {
        /// Its length.
        len: usize,
    },
    /// A secret file others can read.
    #[error("{} is readable by other users; make it mode 0600 or 0640", path.display())]
    SecretReadable {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The environment variable is not set.
    #[error("environment variable {name} is not set")]
    MissingEnv {
        /// Its name.
        name: String,
    },
}

/// The family of an algorithm, by name.
pub fn family(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HMAC",
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => "RSA",
        Algorithm::ES256 | Algorithm::ES384 => "EC",
        Algorithm::EdDSA => "OKP",
    }
}

/// Parses an algorithm name; `none` and unknown names are refused.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Algorithm::from_str(name).ok()
}

fn make(
    kid: Option<String>,
    key: DecodingKey,
    key_family: &'static str,
    allowed: &[Algorithm],
    only: Option<Algorithm>,
) -> Result<VerifyKey, KeyError> {
    let algorithms: Vec<Algorithm> = allowed
        .iter()
        .copied()
        .filter(|a| family(*a) == key_family && only.is_none_or(|only| only == *a))
        .collect();
    let Some(first) = algorithms.first() else {
        return Err(KeyError::NoAlgorithm { family: key_family });
    };
    let mut validation = Validation::new(*first);
    validation.algorithms = algorithms;
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    Ok(VerifyKey {
        kid,
        key,
        validation,
    })
}

/// A PEM public key file.
pub fn from_pem_file(path: &Path, allowed: &[Algorithm]) -> Result<VerifyKey, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (key, key_family) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        (key, "RSA")
    } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        (key, "EC")
    } else if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        (key, "OKP")
    } else {
        return Err(KeyError::NotAPublicKey {
            path: path.to_path_buf(),
        });
    };
    make(None, key, key_family, allowed, None)
}

/// The keys of a JWK set that fit the allowed algorithms. Encryption keys are skipped;
/// symmetric (`oct`) keys only when `symmetric_ok` (a local file, never a URL).
pub fn from_jwks(
    text: &[u8],
    allowed: &[Algorithm],
    symmetric_ok: bool,
) -> Result<Vec<VerifyKey>, KeyError> {
    let set: JwkSet = serde_json::from_slice(text).map_err(|source| KeyError::Jwks { source })?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if let Some(key) = from_jwk(jwk, allowed, symmetric_ok)? {
            keys.push(key);
        }
    }
    Ok(keys)
}

fn from_jwk(
    jwk: &Jwk,
    allowed: &[Algorithm],
    symmetric_ok: bool,
) -> Result<Option<VerifyKey>, KeyError> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let key_family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => "RSA",
        AlgorithmParameters::EllipticCurve(_) => "EC",
        AlgorithmParameters::OctetKeyPair(_) => "OKP",
        AlgorithmParameters::OctetKey(_) if symmetric_ok => "HMAC",
        AlgorithmParameters::OctetKey(_) => return Ok(None),
    };
    let kid = jwk.common.key_id.clone();
    let only = match jwk.common.key_algorithm {
        Some(alg) => match parse_algorithm(&alg.to_string()) {
            Some(alg) => Some(alg),
            // An encryption algorithm: not a signing key.
            None => return Ok(None),
        },
        None => None,
    };
    if !allowed
        .iter()
        .any(|a| family(*a) == key_family && only.is_none_or(|o| o == *a))
    {
        // A key for algorithms this issuer does not accept: never used.
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|source| KeyError::Jwk {
        kid: kid.clone().unwrap_or_else(|| "-".to_owned()),
        source,
    })?;
    make(kid, key, key_family, allowed, only).map(Some)
}

/// An HMAC secret from a file (not readable by others) or an environment variable; one
/// trailing newline is not part of it.
pub fn secret(
    file: Option<&Path>,
    env: Option<&str>,
    allowed: &[Algorithm],
) -> Result<Option<VerifyKey>, KeyError> {
    let Some(bytes) = read_secret(file, env)? else {
        return Ok(None);
    };
    make(
        None,
        DecodingKey::from_secret(&bytes),
        "HMAC",
        allowed,
        None,
    )
    .map(Some)
}

/// The raw secret bytes, checked for length (shared with `token new`).
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<Option<Vec<u8>>, KeyError> {
    let mut bytes = if let Some(path) = file {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if meta.permissions().mode() & 0o004 != 0 {
            return Err(KeyError::SecretReadable {
                path: path.to_path_buf(),
            });
        }
        std::fs::read(path).map_err(read)?
    } else if let Some(name) = env {
        std::env::var_os(name)
            .ok_or_else(|| KeyError::MissingEnv {
                name: name.to_owned(),
            })?
            .into_encoded_bytes()
    } else {
        return Ok(None);
    };
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(KeyError::ShortSecret { len: bytes.len() });
    }
    Ok(Some(bytes))
}
