//! Unit tests of token verification against a hand-moved clock.

use std::{path::Path, sync::Arc, time::Duration};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::{Issuer, TokenError};
use crate::{
    config::{IssuerConfig, Source},
    policy::clock::{ManualClock, SharedClock},
};

const NOW: u64 = 1_800_000_000;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jwt")
}

fn issuer_config(algorithms: &[&str], keys: &[&str]) -> IssuerConfig {
    let text = format!(
        "name = \"t\"\nissuer = \"https://issuer.test\"\naudiences = [\"api\"]\nalgorithms = {algorithms:?}\nkeys = {keys:?}\n"
    );
    toml::from_str(&text).unwrap()
}

fn make_issuer(config: &IssuerConfig) -> (Issuer, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let shared: SharedClock = clock.clone();
    let source = Source {
        file: fixtures().join("config.toml"),
        text: "".into(),
    };
    (Issuer::compile(config, 0, &source, shared).unwrap(), clock)
}

fn claims() -> serde_json::Value {
    json!({"iss": "https://issuer.test", "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW, "scope": "a b"})
}

fn sign(alg: Algorithm, pem: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(fixtures().join(pem)).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn every_key_type_verifies() {
    for (alg, private, public) in [
        (Algorithm::RS256, "rsa-private.pem", "rsa-public.pem"),
        (Algorithm::PS384, "rsa-private.pem", "rsa-public.pem"),
        (Algorithm::ES256, "ec-private.pem", "ec-public.pem"),
        (Algorithm::EdDSA, "ed-private.pem", "ed-public.pem"),
    ] {
        let name = format!("{alg:?}");
        let (issuer, _) = make_issuer(&issuer_config(&[&name], &[public]));
        let token = sign(alg, private, &claims());
        let principal = block_on(issuer.verify(&token)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(principal.subject.as_deref(), Some("alice"));
    }
}

#[test]
fn claims_are_checked_with_leeway() {
    let (issuer, clock) = make_issuer(&issuer_config(&["RS256"], &["rsa-public.pem"]));
    let verify = |c: &serde_json::Value| {
        block_on(issuer.verify(&sign(Algorithm::RS256, "rsa-private.pem", c)))
    };
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(verify(&c).unwrap_err(), TokenError::Issuer);
    let mut c = claims();
    c["aud"] = json!(["other", "more"]);
    assert_eq!(verify(&c).unwrap_err(), TokenError::Audience);
    let mut c = claims();
    c["exp"] = json!(NOW - 31);
    assert_eq!(verify(&c).unwrap_err(), TokenError::Expired);
    c["exp"] = json!(NOW - 29);
    assert!(verify(&c).is_ok(), "within the 30 s leeway");
    let mut c = claims();
    c["nbf"] = json!(NOW + 60);
    assert_eq!(verify(&c).unwrap_err(), TokenError::NotYetValid);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(verify(&c).unwrap_err(), TokenError::MissingExpiry);
    // A cached token is never used past its expiry.
    let token = sign(Algorithm::RS256, "rsa-private.pem", &claims());
    assert!(block_on(issuer.verify(&token)).is_ok());
    assert!(issuer.cached_tokens() >= 1);
    clock.advance(Duration::from_secs(600 + 30));
    assert_eq!(
        block_on(issuer.verify(&token)).unwrap_err(),
        TokenError::Expired
    );
}

#[test]
fn none_and_key_confusion_are_refused() {
    let (issuer, _) = make_issuer(&issuer_config(&["RS256"], &["rsa-public.pem"]));
    // alg=none, unsigned.
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims())
    );
    assert_eq!(
        block_on(issuer.verify(&none)).unwrap_err(),
        TokenError::Malformed
    );
    // HS256 with the RSA public key as the HMAC secret.
    let public = std::fs::read(fixtures().join("rsa-public.pem")).unwrap();
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        block_on(issuer.verify(&forged)).unwrap_err(),
        TokenError::Algorithm
    );
    // Even where HS256 is accepted, an RSA key never verifies HMAC.
    let mut config = issuer_config(&["RS256", "HS256"], &["rsa-public.pem"]);
    config.secret_env = Some("API_SHIELD_TEST_UNSET_SECRET".into());
    let source = Source {
        file: fixtures().join("config.toml"),
        text: "".into(),
    };
    let err = Issuer::compile(&config, 0, &source, Arc::new(ManualClock::new(NOW))).unwrap_err();
    assert_eq!(err.key, "issuers[0].secret_env");
    let (both, _) = make_issuer(&issuer_config(&["RS256", "HS256"], &["rsa-public.pem"]));
    assert_eq!(
        block_on(both.verify(&forged)).unwrap_err(),
        TokenError::UnknownKey
    );
    // Garbage and oversized tokens.
    assert_eq!(
        block_on(issuer.verify("a.b.c")).unwrap_err(),
        TokenError::Malformed
    );
    assert_eq!(
        block_on(issuer.verify(&"x".repeat(17_000))).unwrap_err(),
        TokenError::TooLong
    );
    let token = sign(Algorithm::RS256, "rsa-private.pem", &claims());
    let tampered = format!("{}x", &token[..token.len() - 1]);
    assert!(block_on(issuer.verify(&tampered)).is_err());
}

/// A correctly signed RS256 token with `header` as its JOSE header, whatever it holds.
fn sign_with_header(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let message = format!("{}.{}", b64(header), b64(claims));
    let pem = std::fs::read(fixtures().join("rsa-private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::RS256).unwrap();
    format!("{message}.{signature}")
}

#[test]
fn critical_extensions_and_unencoded_payloads_are_refused() {
    let (issuer, _) = make_issuer(&issuer_config(&["RS256"], &["rsa-public.pem"]));
    // The hand-signing is right: the plain header verifies.
    let plain = sign_with_header(&json!({"alg": "RS256", "typ": "JWT"}), &claims());
    assert!(block_on(issuer.verify(&plain)).is_ok());
    for header in [
        json!({"alg": "RS256", "typ": "JWT", "crit": ["x-unknown"], "x-unknown": 1}),
        json!({"alg": "RS256", "crit": ["exp"]}),
        json!({"alg": "RS256", "crit": []}),
        json!({"alg": "RS256", "b64": false, "crit": ["b64"]}),
        json!({"alg": "RS256", "b64": false}),
    ] {
        let token = sign_with_header(&header, &claims());
        assert_eq!(
            block_on(issuer.verify(&token)).unwrap_err(),
            TokenError::UnsupportedHeader,
            "{header}"
        );
    }
}
