//! The attack matrix of authentication against the running shield: bearer tokens (alg none,
//! key confusion, expiry, issuer, audience, signature, unknown kid with one refetch then a
//! cooldown, garbage, oversized), API keys (wrong, right, expired, in the query where not
//! allowed), scopes (403), forged claim headers. Nothing refused reaches the upstream.

use crate::support;

use std::{os::unix::fs::PermissionsExt, time::Duration};

use support::{
    https::{get, Reply, Upstream, Version},
    shield::{with_headers, Shield},
    tokens::{self, claims, fixture, hs256, rs256, unsigned, JwksServer},
};

const ISS: &str = "https://issuer.test";
const SECRET: &[u8] = b"an-hmac-secret-of-forty-bytes-for-tests!";

fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn policies(jwks: &JwksServer, secret_file: &std::path::Path) -> String {
    format!(
        r#"
[[issuers]]
name = "main"
issuer = "{ISS}"
audiences = ["api"]
algorithms = ["RS256"]
jwks_url = "http://{jwks}/jwks.json"
jwks_refetch_cooldown = "1h"
forward_claims = {{ sub = "x-auth-subject" }}

[[issuers]]
name = "hmac"
issuer = "https://hmac.test"
audiences = ["api"]
algorithms = ["HS256"]
secret_file = "{secret}"

[api_keys]
keys = [
  {{ id = "reader", sha256 = "{reader}", scopes = ["orders:read"] }},
  {{ id = "nobody", sha256 = "{nobody}" }},
  {{ id = "old", sha256 = "{old}", scopes = ["orders:read"], expires = "2020-01-01T00:00:00Z" }},
]

[[routes]]
name = "jwt"
path = "/jwt/*"
upstream = "api"
[routes.auth]
jwt = ["main"]
scopes = ["orders:read"]

[[routes]]
name = "hmac"
path = "/hmac/*"
upstream = "api"
[routes.auth]
jwt = ["hmac"]

[[routes]]
name = "keys"
path = "/keys/*"
upstream = "api"
[routes.auth]
api_key = true
scopes = ["orders:read"]

[[routes]]
name = "keys-query"
path = "/keys-query/*"
upstream = "api"
[routes.auth]
api_key = true
api_key_query = "api_key"

[[routes]]
name = "open"
path = "/open/*"
upstream = "api"
"#,
        jwks = jwks.addr,
        secret = secret_file.display(),
        reader = sha256_hex("reader-key"),
        nobody = sha256_hex("nobody-key"),
        old = sha256_hex("old-key"),
    )
}

struct Setup {
    upstream: Upstream,
    jwks: JwksServer,
    shield: Shield,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start("jwks-main.json").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hmac.secret");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut shield = Shield::start_with(
        upstream.addr,
        &policies(&jwks, &secret),
        "max_header_bytes = 65536",
    );
    shield
        .daemon
        .wait_for("JWK set fetched", Duration::from_secs(10))
        .unwrap();
    Setup {
        upstream,
        jwks,
        shield,
        _dir: dir,
    }
}

async fn bearer(shield: &Shield, target: &str, token: &str) -> Reply {
    shield
        .send(
            Version::H1,
            with_headers(
                get("GET", target),
                &[("authorization", &format!("Bearer {token}"))],
            ),
        )
        .await
}

fn assert_refused(reply: &Reply, status: u16, slug: &str, case: &str) {
    assert_eq!(reply.status.as_u16(), status, "{case}: {:?}", reply.body);
    assert_eq!(
        reply.headers["content-type"], "application/problem+json",
        "{case}"
    );
    let body = reply.json();
    assert_eq!(
        body["type"],
        format!("https://api-shield.dev/problems/{slug}"),
        "{case}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_the_upstream() {
    let setup = setup().await;
    let shield = &setup.shield;
    let good = rs256(
        "rsa-private.pem",
        Some("main-1"),
        &claims(ISS, "orders:read"),
    );
    let public_pem = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let mut expired = claims(ISS, "orders:read");
    expired["exp"] = (tokens::now() - 3600).into();
    let mut early = claims(ISS, "orders:read");
    early["nbf"] = (tokens::now() + 3600).into();
    let mut wrong_aud = claims(ISS, "orders:read");
    wrong_aud["aud"] = "someone-else".into();
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut other = claims(ISS, "orders:read admin");
        other["sub"] = "mallory".into();
        let forged = rs256("rsa-private.pem", Some("main-1"), &other);
        parts[1] = forged.split('.').nth(1).unwrap().to_owned();
        parts.join(".")
    };
    let cases: Vec<(&str, String)> = vec![
        ("alg none", unsigned(&claims(ISS, "orders:read"))),
        (
            "HS256 signed with the RSA public key",
            hs256(&public_pem, &claims(ISS, "orders:read")),
        ),
        (
            "expired",
            rs256("rsa-private.pem", Some("main-1"), &expired),
        ),
        (
            "not yet valid",
            rs256("rsa-private.pem", Some("main-1"), &early),
        ),
        (
            "wrong issuer",
            rs256(
                "rsa-private.pem",
                Some("main-1"),
                &claims("https://evil.test", "orders:read"),
            ),
        ),
        (
            "wrong audience",
            rs256("rsa-private.pem", Some("main-1"), &wrong_aud),
        ),
        ("payload swapped under the signature", tampered),
        (
            "signed by another key under the known kid",
            rs256(
                "rsa2-private.pem",
                Some("main-1"),
                &claims(ISS, "orders:read"),
            ),
        ),
        (
            "correctly signed, with a critical extension it does not implement",
            tokens::rs256_with_header(
                "rsa-private.pem",
                &serde_json::json!({"alg": "RS256", "kid": "main-1", "crit": ["x-unknown"], "x-unknown": true}),
                &claims(ISS, "orders:read"),
            ),
        ),
        (
            "correctly signed, with an unencoded payload (b64: false)",
            tokens::rs256_with_header(
                "rsa-private.pem",
                &serde_json::json!({"alg": "RS256", "kid": "main-1", "b64": false, "crit": ["b64"]}),
                &claims(ISS, "orders:read"),
            ),
        ),
        ("garbage", "not-a-token".to_owned()),
        ("truncated", good[..good.len() / 2].to_owned()),
        ("over 16 KiB", format!("{good}{}", "A".repeat(17 * 1024))),
    ];
    for (case, token) in &cases {
        let reply = bearer(shield, "/jwt/orders", token).await;
        assert_refused(&reply, 401, "invalid-token", case);
        let challenge = reply.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(
            !String::from_utf8_lossy(&reply.body).contains(&token[..token.len().min(40)]),
            "{case}: the token is echoed"
        );
    }
    // No credentials: 401 with a plain challenge.
    let reply = shield.send(Version::H2, get("GET", "/jwt/orders")).await;
    assert_refused(&reply, 401, "unauthenticated", "no token");
    assert_eq!(
        reply.headers["www-authenticate"],
        "Bearer realm=\"api-shield\""
    );
    // HS256 tokens of the HMAC issuer only work on its route, and with its secret.
    let reply = bearer(
        shield,
        "/hmac/x",
        &hs256(SECRET, &claims("https://hmac.test", "")),
    )
    .await;
    assert_eq!(reply.status, 200);
    let reply = bearer(
        shield,
        "/jwt/orders",
        &hs256(SECRET, &claims("https://hmac.test", "")),
    )
    .await;
    assert_refused(&reply, 401, "invalid-token", "HS256 on the RS256 route");
    // The hand-signing is right: the same header without `crit` is accepted.
    let plain = tokens::rs256_with_header(
        "rsa-private.pem",
        &serde_json::json!({"alg": "RS256", "kid": "main-1"}),
        &claims(ISS, "orders:read"),
    );
    assert_eq!(bearer(shield, "/jwt/orders", &plain).await.status, 200);
    let seen = setup.upstream.seen();
    assert_eq!(
        seen.len(),
        2,
        "only the good HMAC token and the plain-header token got through: {seen:?}"
    );
    assert_eq!(
        setup.jwks.fetches(),
        1,
        "none of these named an unknown kid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_claims_and_forged_headers() {
    let setup = setup().await;
    let shield = &setup.shield;
    let reader = rs256(
        "rsa-private.pem",
        Some("main-1"),
        &claims(ISS, "orders:read profile"),
    );
    let request = with_headers(
        get("GET", "/jwt/orders"),
        &[
            ("authorization", &format!("Bearer {reader}")),
            ("x-auth-subject", "admin"),
        ],
    );
    let reply = shield.send(Version::H2, request).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // The same token again: served from the verification cache, same result.
    assert_eq!(bearer(shield, "/jwt/orders", &reader).await.status, 200);
    let no_scope = rs256("rsa-private.pem", Some("main-1"), &claims(ISS, "profile"));
    let reply = bearer(shield, "/jwt/orders", &no_scope).await;
    assert_refused(&reply, 403, "insufficient-scope", "scope missing");
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));
    // A client cannot forge the claim header, on routes with or without auth.
    let reply = shield
        .send(
            Version::H1,
            with_headers(get("GET", "/open/x"), &[("x-auth-subject", "admin")]),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = setup.upstream.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].headers["x-auth-subject"], "alice");
    assert_eq!(seen[0].headers.get_all("x-auth-subject").iter().count(), 1);
    assert_eq!(seen[1].headers["x-auth-subject"], "alice");
    assert!(seen[2].headers.get("x-auth-subject").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_causes_one_refetch_then_a_cooldown() {
    let setup = setup().await;
    let shield = &setup.shield;
    assert_eq!(setup.jwks.fetches(), 1);
    // The issuer rotates: the endpoint now also has `rotated-2`.
    setup.jwks.serve(&["jwks-main.json", "jwks-rotated.json"]);
    let rotated = rs256(
        "rsa2-private.pem",
        Some("rotated-2"),
        &claims(ISS, "orders:read"),
    );
    let reply = bearer(shield, "/jwt/orders", &rotated).await;
    assert_eq!(
        reply.status, 200,
        "refetched and verified: {:?}",
        reply.body
    );
    assert_eq!(setup.jwks.fetches(), 2);
    // Another unknown kid within the cooldown: refused without a fetch, however often.
    let unknown = rs256(
        "rsa2-private.pem",
        Some("never-published"),
        &claims(ISS, "orders:read"),
    );
    for _ in 0..5 {
        let reply = bearer(shield, "/jwt/orders", &unknown).await;
        assert_refused(&reply, 401, "invalid-token", "unknown kid");
    }
    assert_eq!(setup.jwks.fetches(), 2, "the cooldown holds");
    // Keys fetched earlier keep working.
    let main = rs256(
        "rsa-private.pem",
        Some("main-1"),
        &claims(ISS, "orders:read"),
    );
    assert_eq!(bearer(shield, "/jwt/orders", &main).await.status, 200);
    assert_eq!(setup.upstream.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_right_wrong_expired_and_in_the_query() {
    let setup = setup().await;
    let shield = &setup.shield;
    let with_key =
        |target: &str, key: &str| with_headers(get("GET", target), &[("x-api-key", key)]);
    let reply = shield
        .send(Version::H1, with_key("/keys/a", "reader-key"))
        .await;
    assert_eq!(reply.status, 200);
    for (case, key) in [
        ("wrong", "reader-kez"),
        ("expired", "old-key"),
        ("empty", ""),
    ] {
        let reply = shield.send(Version::H1, with_key("/keys/a", key)).await;
        assert_refused(&reply, 401, "invalid-api-key", case);
    }
    let reply = shield
        .send(Version::H2, with_key("/keys/a", "nobody-key"))
        .await;
    assert_refused(&reply, 403, "insufficient-scope", "key without the scope");
    // In the query where the route does not allow it.
    let reply = shield
        .send(Version::H1, get("GET", "/keys/a?api_key=reader-key"))
        .await;
    assert_refused(&reply, 401, "unauthenticated", "key in the query");
    // Where it does, it works and the upstream never sees it.
    let reply = shield
        .send(
            Version::H1,
            get("GET", "/keys-query/a?x=1&api_key=nobody-key&y=2"),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = setup.upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].headers["x-api-key-id"], "reader");
    assert_eq!(seen[0].headers.get_all("x-api-key-id").iter().count(), 1);
    assert_eq!(seen[1].target, "/keys-query/a?x=1&y=2");
    assert_eq!(seen[1].headers["x-api-key-id"], "nobody");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_endpoint_turning_to_garbage_keeps_the_last_good_keys() {
    let upstream = Upstream::start().await;
    let jwks = JwksServer::start("jwks-main.json").await;
    let routes = format!(
        r#"
[[issuers]]
name = "main"
issuer = "{ISS}"
audiences = ["api"]
algorithms = ["RS256"]
jwks_url = "http://{jwks}/jwks.json"
jwks_refetch_cooldown = "0s"

[[routes]]
name = "jwt"
path = "/jwt/*"
upstream = "api"
[routes.auth]
jwt = ["main"]
"#,
        jwks = jwks.addr
    );
    let mut shield = Shield::start(upstream.addr, &routes);
    shield
        .daemon
        .wait_for("JWK set fetched", Duration::from_secs(10))
        .unwrap();
    let good = rs256("rsa-private.pem", Some("main-1"), &claims(ISS, ""));
    assert_eq!(bearer(&shield, "/jwt/a", &good).await.status, 200);
    // The endpoint breaks: garbage, then an empty set. Unknown kids make it fetch again; each
    // fetch fails, and the keys it had keep working.
    for broken in ["<html>oops</html>", "{\"keys\": []}"] {
        *jwks.body.lock().unwrap() = broken.to_owned();
        let before = jwks.fetches();
        let unknown = rs256("rsa2-private.pem", Some("rotated-2"), &claims(ISS, ""));
        let reply = bearer(&shield, "/jwt/a", &unknown).await;
        assert_refused(&reply, 401, "invalid-token", broken);
        assert_eq!(jwks.fetches(), before + 1, "{broken}: one refetch");
        let fresh = rs256("rsa-private.pem", Some("main-1"), &claims(ISS, "again"));
        assert_eq!(
            bearer(&shield, "/jwt/a", &fresh).await.status,
            200,
            "{broken}"
        );
    }
    shield
        .daemon
        .wait_for("keeping the last good set", Duration::from_secs(5))
        .unwrap();
    assert_eq!(upstream.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_shield_checks_is_what_the_upstream_gets() {
    let setup = setup().await;
    let shield = &setup.shield;
    let good = rs256(
        "rsa-private.pem",
        Some("main-1"),
        &claims(ISS, "orders:read"),
    );
    let foreign = rs256(
        "rsa2-private.pem",
        Some("main-1"),
        &claims(ISS, "orders:read admin"),
    );
    let good_bearer = format!("Bearer {good}");
    let foreign_bearer = format!("Bearer {foreign}");
    type Case<'a> = (&'a str, &'a str, Vec<(&'static str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "two Authorization headers, a good token first",
            "/jwt/orders",
            vec![
                ("authorization", good_bearer.as_str()),
                ("authorization", foreign_bearer.as_str()),
            ],
        ),
        (
            "two X-API-Key headers",
            "/keys/orders",
            vec![("x-api-key", "reader-key"), ("x-api-key", "nobody-key")],
        ),
        (
            "a key in the header and in the query",
            "/keys-query/orders?api_key=nobody-key",
            vec![("x-api-key", "reader-key")],
        ),
        (
            "the key parameter twice",
            "/keys-query/orders?api_key=reader-key&api_key=nobody-key",
            vec![],
        ),
        (
            "two Origin headers",
            "/open/x",
            vec![
                ("origin", "https://app.example.com"),
                ("origin", "https://evil.test"),
            ],
        ),
        (
            "two Content-Type headers",
            "/open/x",
            vec![
                ("content-type", "application/json"),
                ("content-type", "text/plain"),
            ],
        ),
    ];
    for version in [Version::H1, Version::H2] {
        for (case, target, headers) in &cases {
            let reply = shield
                .send(version, with_headers(get("GET", target), headers))
                .await;
            assert_refused(
                &reply,
                400,
                "invalid-request",
                &format!("{case} {version:?}"),
            );
        }
    }
    assert!(
        setup.upstream.seen().is_empty(),
        "a refused request reached the upstream: {:?}",
        setup.upstream.seen()
    );
    // Each is an access-log line with its denial (and so a metric and an escalation signal).
    let mut shield = setup.shield;
    shield
        .daemon
        .wait_for_count(
            "\"denial\":\"invalid-request\"",
            cases.len() * 2,
            Duration::from_secs(5),
        )
        .unwrap();

    // A client cannot have the identity headers the shield adds, or the credential it
    // checked, removed as hop-by-hop: its nominations of them are ignored.
    let reply = shield
        .send(
            Version::H1,
            with_headers(
                get("GET", "/jwt/orders"),
                &[
                    ("authorization", good_bearer.as_str()),
                    ("connection", "keep-alive, x-auth-subject, authorization"),
                ],
            ),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let seen = setup.upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].headers["x-auth-subject"], "alice", "{seen:?}");
    assert_eq!(seen[0].headers["authorization"], good_bearer.as_str());
    assert!(seen[0]
        .headers
        .get("connection")
        .is_none_or(|c| !c.to_str().unwrap().contains("x-auth-subject")));
    // A nominated header the shield does not rely on is removed, as hop-by-hop.
    let reply = shield
        .send(
            Version::H1,
            with_headers(
                get("GET", "/open/x"),
                &[("connection", "x-private"), ("x-private", "1")],
            ),
        )
        .await;
    assert_eq!(reply.status, 200);
    let seen = setup.upstream.seen();
    assert!(seen[1].headers.get("x-private").is_none(), "{seen:?}");
}
