// Pedantic lints are for the product code.
#![allow(clippy::pedantic)]
//! Per-request cost of each policy (criterion): JWT verification (RS256, ES256 and HS256 without
//! the cache, and a cache hit), API key lookup among 1000 keys, a GCRA check among 10 000
//! clients, JSON Schema validation of a 1 KiB body. Run with `cargo bench -p api-shield`.

use std::{hint::black_box, path::Path, sync::Arc};

use api_shield::{
    config::{ApiKeyEntry, ApiKeysConfig, IssuerConfig, Source},
    policy::{
        auth::{
            api_key::{hex, sha256, ApiKeys},
            jwt::Issuer,
        },
        clock::ManualClock,
        ratelimit::KeyedGcra,
        validate::{Schema, Validation},
    },
};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

// The daemon's allocator, so allocation costs are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NOW: u64 = 1_800_000_000;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jwt")
}

fn issuer(algorithm: &str, keys: &str, secret_env: Option<&str>) -> Issuer {
    let mut text = format!(
        "name = \"b\"\nissuer = \"https://issuer.bench\"\naudiences = [\"api\"]\nalgorithms = [\"{algorithm}\"]\nkeys = [{keys}]\n"
    );
    if let Some(env) = secret_env {
        use std::fmt::Write as _;
        let _ = writeln!(text, "secret_env = \"{env}\"");
    }
    let config: IssuerConfig = toml::from_str(&text).unwrap();
    let source = Source {
        file: fixtures().join("bench.toml"),
        text: "".into(),
    };
    Issuer::compile(&config, 0, &source, Arc::new(ManualClock::new(NOW))).unwrap()
}

fn token(alg: Algorithm, key: &EncodingKey) -> String {
    let claims = json!({"iss": "https://issuer.bench", "aud": "api", "sub": "alice", "exp": NOW + 3600, "iat": NOW, "scope": "orders:read orders:write"});
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let pem = |name: &str| std::fs::read(fixtures().join(name)).unwrap();
    let secret = "bench-hmac-secret-of-at-least-32-bytes!";
    // SAFETY: set before any thread of this benchmark reads the environment.
    unsafe { std::env::set_var("API_SHIELD_BENCH_SECRET", secret) };
    let cases = [
        (
            "jwt_rs256_verify",
            issuer("RS256", "\"rsa-public.pem\"", None),
            token(
                Algorithm::RS256,
                &EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).unwrap(),
            ),
        ),
        (
            "jwt_es256_verify",
            issuer("ES256", "\"ec-public.pem\"", None),
            token(
                Algorithm::ES256,
                &EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap(),
            ),
        ),
        (
            "jwt_hs256_verify",
            issuer("HS256", "", Some("API_SHIELD_BENCH_SECRET")),
            token(
                Algorithm::HS256,
                &EncodingKey::from_secret(secret.as_bytes()),
            ),
        ),
    ];
    for (name, issuer, token) in &cases {
        c.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(issuer.verify_uncached(black_box(token)))
                    .unwrap()
            });
        });
    }
    let (_, issuer, token) = &cases[0];
    runtime.block_on(issuer.verify(token)).unwrap();
    c.bench_function("jwt_rs256_cache_hit", |b| {
        b.iter(|| runtime.block_on(issuer.verify(black_box(token))).unwrap());
    });
}

fn api_keys(c: &mut Criterion) {
    let keys = ApiKeys::compile(&ApiKeysConfig {
        header: "x-api-key".into(),
        keys: (0..1000)
            .map(|i| ApiKeyEntry {
                id: format!("key-{i}"),
                sha256: hex(&sha256(format!("ask_secret_key_number_{i}").as_bytes())),
                scopes: vec!["orders:read".into()],
                expires: None,
            })
            .collect(),
    })
    .unwrap();
    let presented = b"ask_secret_key_number_517".to_vec();
    c.bench_function("api_key_lookup_1000_keys", |b| {
        b.iter(|| keys.authenticate(black_box(&presented), NOW).unwrap());
    });
}

fn gcra(c: &mut Criterion) {
    let gcra = KeyedGcra::new(1_000, 1_000_000, 100_000);
    let clients: Vec<std::net::IpAddr> = (0..10_000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
        .collect();
    let mut i = 0usize;
    let mut now = 1_000_000_000u64;
    c.bench_function("gcra_check_10000_clients", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            now += 100;
            black_box(gcra.check(&clients[i], now))
        });
    });
}

fn schema(c: &mut Criterion) {
    let validation = Validation {
        body: Some(
            Schema::load(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/order.schema.json"),
                "bench",
            )
            .unwrap(),
        ),
        ..Validation::default()
    };
    let items: Vec<_> = (0..29)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "quantity": i + 1}))
        .collect();
    let body = serde_json::to_vec(
        &json!({"customer": "acme-corp", "note": "leave at the door", "items": items}),
    )
    .unwrap();
    assert!((900..=1200).contains(&body.len()), "{} bytes", body.len());
    c.bench_function("schema_validate_1kib_body", |b| {
        b.iter(|| validation.check_body(black_box(&body)).unwrap());
    });
    c.bench_function("ignored_parse_1kib_body", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).unwrap());
    });
    c.bench_function("tape_parse_1kib_body", |b| {
        b.iter(|| {
            let mut text = black_box(&body).clone();
            black_box(api_shield::policy::json_tape::Tape::parse(&mut text).is_ok())
        });
    });
    c.bench_function("json_parse_1kib_body", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
    });
}

criterion_group!(benches, jwt, api_keys, gcra, schema);
criterion_main!(benches);
