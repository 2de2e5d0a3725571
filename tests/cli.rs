//! The CLI as a user meets it: check-config exit codes and messages, errors that name their
//! cause, key and token commands, man pages, logs and output pipes. Its commands on the kernel
//! maps are `cli_maps`'.

use crate::support;

use support::{daemon::cli, privileged, write_file};

#[test]
fn the_shipped_default_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/api-shield.toml");
    let (code, out, err) = cli(&["check-config", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok"), "{out}");
}

/// Output into a pipe whose reader is gone (`api-shield ... | head`) ends the command as it ends
/// other Unix tools, by SIGPIPE, with nothing on stderr: never a panic (exit 101, "failed
/// printing to stdout").
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(&dir, "ok.toml", "[fastpath]\nenabled = false\n");
    for args in [
        vec!["check-config", config.as_str()],
        vec!["generate", "completions", "bash"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(support::daemon::binary())
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?}, stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
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
        let path = write_file(&dir, name, text);
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
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("{ id = \"ci\""))
        .unwrap_or_else(|| panic!("no `keys = [ ... ]` element printed: {out}"));
    assert!(!line.contains(key), "the config line holds no key");
    // Pasted into the shipped default config as its comment says, it is accepted.
    let default = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/api-shield.toml"
    ))
    .unwrap();
    let pasted = default.replacen("keys = [\n", &format!("keys = [\n{line}\n"), 1);
    assert_ne!(pasted, default);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    for schema in [
        "user.schema.json",
        "order.schema.json",
        "feedback.schema.json",
        "orders-openapi.yaml",
    ] {
        std::fs::copy(
            format!("{}/../config/examples/{schema}", env!("CARGO_MANIFEST_DIR")),
            dir.path().join("examples").join(schema),
        )
        .unwrap();
    }
    let path = write_file(&dir, "api-shield.toml", &pasted);
    let (code, out, err) = cli(&["check-config", &path]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, again, _) = cli(&["key", "new"]);
    assert_ne!(out, again, "keys are random");
}

#[test]
fn token_new_mints_tokens_the_issuer_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write_file(&dir, "secret", "0123456789abcdef0123456789abcdef-secret\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwt");
    let config = write_file(&dir,
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

#[test]
fn the_man_pages_it_names_exist_and_say_files_exit_status_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let (code, _, err) = cli(&["generate", "man", "--dir", &out]);
    assert_eq!(code, 0, "{err}");
    let main = std::fs::read_to_string(dir.path().join("api-shield.8")).unwrap();
    for section in [
        ".SH FILES",
        ".SH \"EXIT STATUS\"",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(main.contains(section), "no {section} in api-shield(8)");
    }
    assert!(main.contains("64"), "the exit status for a bad config");
    let mut named = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let page = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // References look like `api\\-shield\\-run(8)` or `\\fBapi\\-shield\\-run\\fR(8)` in roff.
        let plain = page
            .replace("\\fB", "")
            .replace("\\fR", "")
            .replace("\\fI", "")
            .replace("\\-", "-");
        for (i, _) in plain.match_indices("(8)") {
            let start = plain[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .map_or(0, |p| p + 1);
            let name = &plain[start..i];
            if name.starts_with("api-shield") {
                named += 1;
                assert!(
                    dir.path().join(format!("{name}.8")).exists(),
                    "{name}(8) is named but not generated"
                );
            }
        }
    }
    assert!(named >= 10, "the subcommand pages are listed ({named})");
    assert!(dir.path().join("api-shield-detach.8").exists());
    assert!(dir.path().join("api-shield-key-new.8").exists());
}

#[test]
fn errors_name_their_cause_once_and_a_bad_config_stops_run_with_64() {
    let (code, _, err) = cli(&["check-config", "/nonexistent/api-shield.toml"]);
    assert_eq!(code, 64);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(&dir, "bad.toml", "[fastpath]\nintefaces = [\"lo\"]\n");
    let (code, _, err) = cli(&["run", "--config", &bad]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains(&format!("{bad}:2")), "{err}");
    // A config whose policies cannot be compiled (a schema file that is not there): 64 from
    // run as from check-config.
    let schema = write_file(&dir,
        "schema.toml",
        &format!(
            "[fastpath]\nenabled = false\n[admin]\nenabled = false\n[control]\nsocket = \"{}\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n[listeners.tls]\nadhoc = true\n[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"api\"\n[routes.validate]\nbody_schema = \"missing.json\"\n",
            dir.path().join("c.sock").display()
        ),
    );
    for command in ["run", "check-config"] {
        let args: Vec<&str> = if command == "run" {
            vec!["run", "--config", &schema]
        } else {
            vec!["check-config", &schema]
        };
        let (code, _, err) = cli(&args);
        assert_eq!(code, 64, "{command}: {err}");
        assert!(
            err.contains("routes[0].validate.body_schema"),
            "{command}: {err}"
        );
    }
    let missing = write_file(
        &dir,
        "missing.toml",
        "[fastpath]\ninterfaces = [\"lo\", \"asx-none0\"]\n",
    );
    for command in ["run", "check-config"] {
        let args: Vec<&str> = if command == "run" {
            vec!["run", "--config", &missing]
        } else {
            vec!["check-config", &missing]
        };
        let (code, _, err) = cli(&args);
        assert_eq!(code, 64, "{command}: {err}");
        assert!(
            err.contains("fastpath.interfaces[1]") && err.contains("`asx-none0` does not exist"),
            "{command}: {err}"
        );
    }
}

#[test]
fn text_logs_to_a_file_or_pipe_carry_no_colour_codes() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        &dir,
        "c.toml",
        &format!(
            "[fastpath]\nenabled = false\n[admin]\nenabled = false\n[control]\nsocket = \"{}\"\n",
            dir.path().join("control.sock").display()
        ),
    );
    let mut child = std::process::Command::new(support::daemon::binary())
        .args(["run", "--config", &config])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line.contains("ready");
        seen.push(line);
        if ready {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    seen.extend(lines.map_while(Result::ok));
    child.wait().unwrap();
    let text = seen.join("\n");
    assert!(text.contains("ready") && text.contains("stopped"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a pipe: {text:?}"
    );
}

#[test]
fn a_port_below_1024_without_the_capability_says_which_capability() {
    if !privileged::can_run(
        "a_port_below_1024_without_the_capability_says_which_capability",
        false,
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = write_file(&dir,
        "c.toml",
        &format!(
            "[fastpath]\nenabled = false\n[admin]\nenabled = false\n[control]\nsocket = \"{}\"\n[[listeners]]\nbind = \"127.0.0.1:81\"\n[listeners.tls]\nadhoc = true\n[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:9\"\n[[routes]]\nname = \"r\"\npath = \"/x\"\nupstream = \"api\"\n",
            dir.path().join("c.sock").display()
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(support::daemon::binary())
        .args(["run", "--config", &config])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot listen on 127.0.0.1:81") && err.contains("need CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}

#[test]
fn the_docs_link_only_to_files_inside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let mut docs = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut checked = 0;
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        assert!(
            !text.contains("../shared"),
            "{} points outside",
            doc.display()
        );
        // Markdown links `](target)` that are not URLs must name a file in the repository.
        for (start, _) in text.match_indices("](") {
            let rest = &text[start + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = doc.parent().unwrap().join(target);
            let resolved = resolved
                .canonicalize()
                .unwrap_or_else(|_| panic!("{}: {target} does not exist", doc.display()));
            assert!(
                resolved.starts_with(&root),
                "{}: {target} is outside the repository",
                doc.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} links checked");
}
