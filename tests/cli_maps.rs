//! The CLI on the kernel maps with no daemon running: `ban`, `unban`, `bans` and `stats` round
//! trips on pinned maps, clear errors for bad addresses and TTLs, the guard rails on bans and
//! deny rules, and another user's read refused with a word.

use crate::support;

use support::{
    daemon::{cli, cli_json},
    privileged::{self, PinDir},
    write_file,
};

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
    let config = write_file(
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
fn deny_rules_with_host_bits_too_broad_or_inside_allow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "hostbits.toml",
            "[fastpath]\ndeny = [\"10.77.0.12/24\"]\n",
            "fastpath.deny[0]",
            "has host bits set: write 10.77.0.0/24",
        ),
        (
            "allowbits.toml",
            "[fastpath]\nallow = [\"10.0.0.0/8\", \"192.0.2.1/24\"]\n",
            "fastpath.allow[1]",
            "has host bits set",
        ),
        (
            "all4.toml",
            "[fastpath]\ndeny = [\"0.0.0.0/0\"]\n",
            "fastpath.deny[0]",
            "min_prefix_v4",
        ),
        (
            "all6.toml",
            "[fastpath]\ndeny = [\"2001:db8::/32\",\n  \"::/0\"]\n",
            "fastpath.deny[1]",
            "every IPv4 address",
        ),
        (
            "inside.toml",
            "[fastpath]\nallow = [\"10.0.0.0/8\"]\ndeny = [\"10.1.0.0/16\"]\n",
            "fastpath.deny[0]",
            "would drop nothing",
        ),
    ];
    for (name, text, key, message) in cases {
        let path = write_file(&dir, name, text);
        let (code, out, err) = cli(&["check-config", &path]);
        assert_eq!(code, 64, "{name}: {out}{err}");
        assert!(err.contains(key) && err.contains(message), "{name}: {err}");
    }
    // The operator may widen the rails in the config.
    let path = write_file(
        &dir,
        "wide.toml",
        "[fastpath]\ndeny = [\"10.0.0.0/7\"]\n[fastpath.guard]\nmin_prefix_v4 = 7\n",
    );
    let (code, out, err) = cli(&["check-config", &path]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bans_that_would_cut_the_host_off_or_do_nothing_are_refused() {
    if !privileged::can_run(
        "bans_that_would_cut_the_host_off_or_do_nothing_are_refused",
        false,
    ) {
        return;
    }
    let pins = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(&dir,
        "c.toml",
        &format!(
            "[fastpath]\npin_dir = \"{}\"\nruntime_dir = \"{}\"\nallow = [\"127.0.0.0/8\", \"::1/128\"]\n",
            pins.path.display(),
            dir.path().join("run").display()
        ),
    );
    let ban = |extra: &[&str]| {
        let mut args = vec!["ban"];
        args.extend_from_slice(extra);
        args.extend(["--config", config.as_str()]);
        cli(&args)
    };
    for (target, message) in [
        ("::/0", "every IPv4 address"),
        ("0.0.0.0/0", "min_prefix_v4"),
        ("::ffff:0.0.0.0/96", "min_prefix_v4"),
        ("10.0.0.0/7", "/8 for IPv4"),
        ("2000::/15", "/16 for IPv6"),
        (
            "10.77.0.99/24",
            "has host bits set: write 10.77.0.0/24 for the network, or 10.77.0.99/32",
        ),
        ("127.0.0.1", "inside the allow list entry 127.0.0.0/8"),
        ("::1", "inside the allow list entry ::1/128"),
    ] {
        let (code, out, err) = ban(&[target]);
        assert_eq!(code, 64, "{target}: {out}{err}");
        assert!(err.contains(message), "{target}: {err}");
    }
    // Nothing was written.
    let bans = cli_json(&["bans", "--json", "--config", &config]);
    assert_eq!(bans, serde_json::json!([]), "{bans}");
    // --force is the operator's explicit choice for breadth; the allowed sources still pass,
    // and the answer says so.
    let (code, out, err) = ban(&["10.0.0.0/7", "--force", "--ttl", "1m"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("banned 10.0.0.0/7"), "{out}");
    let (code, out, err) = ban(&["0.0.0.0/0", "--force", "--ttl", "1m"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("note: 127.0.0.0/8 lies inside it and stays allowed"),
        "{out}"
    );
    // --force never makes an allowlisted ban effective.
    let (code, _, err) = ban(&["127.0.0.1", "--force"]);
    assert_eq!(code, 64, "{err}");
    // Unban also takes only exact networks.
    let (code, _, err) = cli(&["unban", "10.0.0.1/7", "--config", &config]);
    assert_eq!(code, 64, "{err}");
    let (code, _, err) = cli(&["unban", "10.0.0.0/7", "--config", &config]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn reading_the_maps_as_another_user_says_permission_denied() {
    if !privileged::can_run(
        "reading_the_maps_as_another_user_says_permission_denied",
        false,
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let pins = PinDir::new();
    let pin_dir = pins.path.display().to_string();
    // A config the other user may read (so the refusal is the maps', whatever is installed in
    // /etc on this machine).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = write_file(&dir,
        "c.toml",
        &format!(
            "[fastpath]\npin_dir = \"{pin_dir}\"\nruntime_dir = \"{}\"\n[control]\ndisabled = true\n",
            dir.path().join("run").display()
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = cli(&["ban", "203.0.113.9", "--config", &config]);
    assert_eq!(code, 0, "{err}");
    for command in ["stats", "bans"] {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(support::daemon::binary())
            .args([command, "--config", &config])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {err}");
        assert!(err.contains("permission denied"), "{command}: {err}");
        assert!(
            !err.contains("no api-shield maps are pinned"),
            "{command}: {err}"
        );
    }
}
