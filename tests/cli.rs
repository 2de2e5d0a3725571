//! The CLI as a user meets it: check-config exit codes and messages, argument errors, and the
//! ban/unban/bans/stats round trip on pinned maps with no daemon running.
// Pedantic lints are for the product code; tests favour plain, direct code.
#![allow(clippy::pedantic)]

mod support;

use support::{
    daemon::{cli, cli_json},
    privileged::{self, PinDir},
};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn the_shipped_default_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/api-shield.toml");
    let (code, out, err) = cli(&["check-config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn check_config_exits_64_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown.toml",
            "[fastpath]\nenabled = true\nintefaces = [\"lo\"]\n",
            3,
            "intefaces",
        ),
        (
            "type.toml",
            "[fastpath.limiter]\n\nrate = \"fast\"\n",
            3,
            "fastpath.limiter.rate",
        ),
        (
            "range.toml",
            "[fastpath.limiter]\nipv6_prefix = 129\n",
            2,
            "fastpath.limiter.ipv6_prefix",
        ),
        (
            "cidr.toml",
            "[fastpath]\ndeny = [\"10.0.0.0/8\", \"10.0.0.1/40\"]\n",
            2,
            "fastpath.deny",
        ),
        (
            "ttl.toml",
            "[fastpath.events]\ninterval = \"0s\"\n",
            2,
            "fastpath.events.interval",
        ),
        (
            "ports.toml",
            "[fastpath.limiter.protect]\ntcp = [\"90-80\"]\n",
            2,
            "fastpath.limiter.protect.tcp[0]",
        ),
        ("syntax.toml", "[fastpath\nenabled = true\n", 1, ""),
        (
            "cors.toml",
            "[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:9000\"\n[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"api\"\n[routes.cors]\norigins = [\"*\"]\ncredentials = true\n",
            10,
            "routes[0].cors.credentials",
        ),
        (
            "upstream.toml",
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"nope\"\n",
            4,
            "routes[0].upstream",
        ),
        (
            "listener.toml",
            "[[listeners]]\nbind = \"127.0.0.1:8443\"\n[listeners.tls]\nadhoc = true\ncertificates = [{ cert = \"a\", key = \"b\" }]\n",
            3,
            "listeners[0].tls",
        ),
        (
            "issuer.toml",
            "[[issuers]]\nname = \"i\"\nissuer = \"https://i\"\naudiences = [\"api\"]\nalgorithms = [\"none\"]\nsecret_env = \"X\"\n",
            5,
            "issuers[0].algorithms",
        ),
        (
            "schema.toml",
            "[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:9000\"\n[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"api\"\n[routes.validate]\nbody_schema = \"missing.json\"\n",
            9,
            "routes[0].validate.body_schema",
        ),
        (
            "rate.toml",
            "[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:9000\"\n[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"api\"\nrate_limit = \"5 per fortnight\"\n",
            8,
            "routes[0].rate_limit",
        ),
        (
            "apikey.toml",
            "[api_keys]\nkeys = [\n  { id = \"a\", sha256 = \"abc\" },\n]\n",
            3,
            "api_keys.keys[0].sha256",
        ),
    ];
    for (name, text, line, key) in cases {
        let path = write(&dir, name, text);
        let (code, out, err) = cli(&["check-config", &path]);
        assert_eq!(code, 64, "{name}: {out}{err}");
        assert!(
            err.contains(&format!("{path}:{line}")),
            "{name}: no {path}:{line} in {err}"
        );
        assert!(err.contains(key), "{name}: no key {key} in {err}");
    }
    let (code, _, err) = cli(&["check-config", "/nonexistent/api-shield.toml"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("/nonexistent/api-shield.toml: cannot read config"),
        "{err}"
    );
}

#[test]
fn bad_addresses_and_ttls_are_clear_errors() {
    let (code, _, err) = cli(&["ban", "10.0.0.300", "--pin-dir", "/nonexistent"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("`10.0.0.300` is not an IP address or CIDR"),
        "{err}"
    );
    let (code, _, err) = cli(&[
        "ban",
        "10.0.0.1",
        "--ttl",
        "soon",
        "--pin-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, 2, "clap rejects the argument: {err}");
    assert!(err.contains("`soon` is not a duration"), "{err}");
    let (code, _, err) = cli(&[
        "ban",
        "10.0.0.1",
        "--ttl",
        "0s",
        "--pin-dir",
        "/nonexistent",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("more than zero"), "{err}");
    let (code, _, err) = cli(&["unban", "2001:db8::/129", "--pin-dir", "/nonexistent"]);
    assert_eq!(code, 64);
    assert!(err.contains("is not an IP address or CIDR"), "{err}");
}

#[test]
fn ban_unban_bans_and_stats_work_without_a_daemon() {
    if !privileged::can_run("ban_unban_bans_and_stats_work_without_a_daemon", false) {
        return;
    }
    let pins = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir,
        "c.toml",
        &format!(
            "[fastpath]\npin_dir = \"{}\"\nruntime_dir = \"{}\"\n",
            pins.path.display(),
            dir.path().join("run").display()
        ),
    );
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        v.extend(["--config".to_owned(), config.clone()]);
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let json = |extra: &[&str]| {
        let a = args(extra);
        cli_json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Before anything is pinned, reading is a clear error.
    let (code, _, err) = run(&["bans"]);
    assert_eq!(code, 1);
    assert!(err.contains("no api-shield maps are pinned"), "{err}");

    // `ban` creates the maps itself.
    let ban = json(&[
        "ban",
        "203.0.113.7",
        "--ttl",
        "15m",
        "--reason",
        "credential stuffing",
        "--json",
    ]);
    assert_eq!(ban["target"], "203.0.113.7/32");
    let left = ban["remaining_secs"].as_u64().unwrap();
    assert!((899..=900).contains(&left), "{ban}");
    let expires = humantime::parse_rfc3339(ban["expires"].as_str().unwrap()).unwrap();
    let in_15m = std::time::SystemTime::now() + std::time::Duration::from_secs(900);
    let skew = in_15m
        .duration_since(expires)
        .unwrap_or_else(|e| e.duration());
    assert!(
        skew < std::time::Duration::from_secs(5),
        "wall-clock expiry is 15 min ahead: {ban}"
    );

    let (code, _, err) = run(&["ban", "2001:db8:1::/48", "--permanent", "--reason", "abuse"]);
    assert_eq!(code, 0, "{err}");
    let bans = json(&["bans", "--json"]);
    assert_eq!(bans.as_array().unwrap().len(), 2, "{bans}");
    assert_eq!(bans[0]["target"], "203.0.113.7/32");
    assert_eq!(bans[1]["target"], "2001:db8:1::/48");
    assert_eq!(bans[1]["expires"], serde_json::Value::Null);
    let (code, table, _) = run(&["bans"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("credential stuffing") && table.contains("never"),
        "{table}"
    );

    let (code, out, err) = run(&["unban", "203.0.113.7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unbanned 203.0.113.7/32"));
    let (code, _, err) = run(&["unban", "203.0.113.7"]);
    assert_eq!(code, 1);
    assert!(err.contains("no ban for 203.0.113.7/32"), "{err}");
    assert_eq!(json(&["bans", "--json"]).as_array().unwrap().len(), 1);

    let stats = json(&["stats", "--json"]);
    assert_eq!(stats["daemon_running"], false);
    assert_eq!(stats["active_bans"], 1);
    let counters = stats["counters"].as_array().unwrap();
    assert_eq!(counters.len(), api_shield_common::Reason::COUNT as usize);
    assert!(counters
        .iter()
        .any(|c| c["action"] == "drop" && c["reason"] == "rate_limited"));
    let (code, table, _) = run(&["stats"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("daemon: not running") && table.contains("rate_limited"),
        "{table}"
    );
}

#[test]
fn key_new_prints_a_key_whose_hash_the_config_accepts() {
    let (code, out, err) = cli(&[
        "key",
        "new",
        "--id",
        "ci",
        "--scopes",
        "orders:read,orders:write",
    ]);
    assert_eq!(code, 0, "{err}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key (shown once, give it to the client): "))
        .unwrap();
    assert!(key.starts_with("ask_") && key.len() > 40, "{key}");
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert!(out.contains(&format!("sha256 = \"{hex}\"")), "{out}");
    assert!(
        out.contains("scopes = [\"orders:read\", \"orders:write\"]"),
        "{out}"
    );
    assert!(
        !out[out.find("[[api_keys.keys]]").unwrap()..].contains(key),
        "the config line holds no key"
    );
    let (_, again, _) = cli(&["key", "new"]);
    assert_ne!(out, again, "keys are random");
}

#[test]
fn token_new_mints_tokens_the_issuer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(&dir, "secret", "0123456789abcdef0123456789abcdef-secret\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");
    let config = write(
        &dir,
        "c.toml",
        &format!(
            "[[issuers]]\nname = \"hs\"\nissuer = \"https://hs\"\naudiences = [\"api\"]\nalgorithms = [\"HS256\"]\nsecret_file = \"secret\"\n\n[[issuers]]\nname = \"rs\"\nissuer = \"https://rs\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\nkeys = [\"{fixtures}/rsa-public.pem\"]\nsigning_key = \"{fixtures}/rsa-private.pem\"\n"
        ),
    );
    let (code, out, err) = cli(&["check-config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    for (issuer, alg, key) in [
        (
            "hs",
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::DecodingKey::from_secret(b"0123456789abcdef0123456789abcdef-secret"),
        ),
        (
            "rs",
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::DecodingKey::from_rsa_pem(
                &std::fs::read(format!("{fixtures}/rsa-public.pem")).unwrap(),
            )
            .unwrap(),
        ),
    ] {
        let (code, out, err) = cli(&[
            "token", "new", "--config", &config, "--issuer", issuer, "--sub", "alice", "--scopes",
            "a,b", "--ttl", "10m",
        ]);
        assert_eq!(code, 0, "{err}");
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.set_audience(&["api"]);
        let data =
            jsonwebtoken::decode::<serde_json::Value>(out.trim(), &key, &validation).unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["scope"], "a b");
        assert_eq!(data.claims["iss"], format!("https://{issuer}"));
        let ttl = data.claims["exp"].as_u64().unwrap() - data.claims["iat"].as_u64().unwrap();
        assert_eq!(ttl, 600);
    }
    let (code, _, err) = cli(&[
        "token", "new", "--config", &config, "--issuer", "nope", "--sub", "s",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("no issuer is named `nope`"), "{err}");
    // A world-readable secret is refused.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = cli(&["check-config", &config]);
    assert_eq!(code, 64);
    assert!(
        err.contains("readable by other users") && err.contains("issuers[0].secret_file"),
        "{err}"
    );
}
