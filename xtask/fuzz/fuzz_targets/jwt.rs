//! Bearer tokens through an issuer that accepts HS256 (a secret) and RS256 (a PEM key): never a
//! panic, and nothing but the tokens signed with those keys is accepted. Inputs are tried raw
//! and as JSON claims signed with an unknown key and with the `none` algorithm.
#![no_main]

use std::{path::Path, sync::Arc};

use api_shield::{
    config::{IssuerConfig, Source},
    policy::{auth::jwt::Issuer, clock::ManualClock},
};
use libfuzzer_sys::fuzz_target;

const SECRET_ENV: &str = "API_SHIELD_FUZZ_SECRET";

fn issuer() -> Issuer {
    // SAFETY: set before the issuer reads it, on the fuzzing thread, before any other thread.
    unsafe { std::env::set_var(SECRET_ENV, "fuzzing-secret-of-at-least-32-bytes!") };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/jwt");
    let config: IssuerConfig = toml::from_str(&format!(
        "name = \"f\"\nissuer = \"https://fuzz\"\naudiences = [\"api\"]\nalgorithms = [\"HS256\", \"RS256\"]\nkeys = [\"{}\"]\nsecret_env = \"{SECRET_ENV}\"\n",
        fixtures.join("rsa-public.pem").display()
    ))
    .unwrap();
    Issuer::compile(
        &config,
        0,
        &Source::default(),
        Arc::new(ManualClock::new(1_800_000_000)),
    )
    .unwrap()
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static ISSUER: Issuer = issuer();
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tokens = vec![text.to_owned()];
    if let Ok(claims) = serde_json::from_str::<serde_json::Value>(text) {
        let foreign = jsonwebtoken::EncodingKey::from_secret(b"another-secret-nobody-configured!!");
        tokens.push(
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &foreign).unwrap(),
        );
        let b64 = |v: &str| {
            use std::fmt::Write;
            // base64url without padding, by hand, to build an `alg: none` token.
            const A: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = v.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    let _ = out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        };
        tokens.push(format!(
            "{}.{}.",
            b64("{\"alg\":\"none\",\"typ\":\"JWT\"}"),
            b64(text)
        ));
    }
    ISSUER.with(|issuer| {
        RUNTIME.with(|runtime| {
            for token in &tokens {
                let verdict = runtime.block_on(issuer.verify(token));
                assert!(
                    verdict.is_err(),
                    "accepted a token it has no key for: {token}"
                );
            }
        });
    });
});
