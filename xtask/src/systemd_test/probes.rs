//! How the steps look at the system: systemctl (run, show), the unit's journal, the veth's XDP
//! state (`ip -d link`), curl from the client namespace, the drop counters (`api-shield stats
//! --json`), a reload with its expected outcome, and polling with a deadline.

use std::{
    collections::HashMap,
    path::Path,
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    config, host,
    sandbox::SERVER_IF,
    steps::{Ctx, BINARY, SYSTEMCTL_LIMIT, UNIT},
};

const POLL: Duration = Duration::from_millis(200);

/// `systemctl ARGS` in the container.
pub fn systemctl(ctx: &Ctx, args: &[&str]) -> Result<Output> {
    let mut full = vec!["systemctl"];
    full.extend_from_slice(args);
    ctx.sandbox.inside(SYSTEMCTL_LIMIT, &full)
}

/// `systemctl show -p ...` as a map (a missing property reads as empty).
pub fn show(ctx: &Ctx, properties: &[&str]) -> Result<HashMap<String, String>> {
    let mut args = vec!["show"];
    for property in properties {
        args.extend(["-p", property]);
    }
    args.push(UNIT);
    let out = systemctl(ctx, &args)?;
    ensure!(
        out.status.success(),
        "systemctl show failed: {}",
        text(&out)
    );
    let mut map: HashMap<String, String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for property in properties {
        map.entry((*property).to_owned()).or_default();
    }
    Ok(map)
}

/// The XDP attachment on the server's veth: (`xdp` or `xdpgeneric` ..., program id).
pub fn xdp_state(ctx: &Ctx) -> Result<Option<(String, u32)>> {
    let out = host::must(
        "ip",
        &[
            "-n",
            &ctx.sandbox.server_ns,
            "-d",
            "link",
            "show",
            "dev",
            SERVER_IF,
        ],
    )?;
    let mut words = out.split_whitespace();
    let mode = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .find(|w| w.starts_with("xdp"))
        .map(str::to_owned);
    let id = std::iter::from_fn(|| words.next())
        .skip_while(|w| !w.starts_with("prog/xdp"))
        .nth(2)
        .and_then(|id| id.parse().ok());
    Ok(match (mode, id) {
        (Some(mode), Some(id)) => Some((mode, id)),
        (None, None) => None,
        _ => bail!("cannot read the XDP state from `ip -d link show`:\n{out}"),
    })
}

pub fn url(ctx: &Ctx) -> String {
    format!(
        "https://{}:{}{}",
        ctx.sandbox.server_addr,
        config::HTTPS_PORT,
        config::HTTPS_PATH
    )
}

/// curl from the client namespace: (exit success, HTTP code, stderr).
pub fn curl(ctx: &Ctx, max_time: u64) -> Result<(bool, String, String)> {
    let max_time = max_time.to_string();
    let out = host::in_netns(
        &ctx.sandbox.client_ns,
        Duration::from_secs(30),
        &[
            "curl",
            "-k",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            &max_time,
            &url(ctx),
        ],
    )?;
    Ok((
        out.status.success(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

/// Packets dropped for reason `banned`, from `api-shield stats --json` in the container.
pub fn banned_drops(ctx: &Ctx) -> Result<u64> {
    let out = ctx
        .sandbox
        .inside(SYSTEMCTL_LIMIT, &[BINARY, "stats", "--json"])?;
    ensure!(
        out.status.success(),
        "`api-shield stats --json` failed: {}",
        text(&out)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("`api-shield stats --json` is not JSON")?;
    report["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["action"] == "drop" && row["reason"] == "banned")
        .and_then(|row| row["packets"].as_u64())
        .context("`api-shield stats --json` has no drop/banned counter")
}

/// How many of the unit's journal lines contain `needle`.
pub fn journal_count(ctx: &Ctx, needle: &str) -> Result<usize> {
    Ok(journal_lines(ctx, needle)?.len())
}

/// The unit's journal lines (message text only) that contain `needle`.
pub fn journal_lines(ctx: &Ctx, needle: &str) -> Result<Vec<String>> {
    let out = ctx.sandbox.inside(
        Duration::from_secs(20),
        &["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"],
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect())
}

/// `systemctl reload`, which must succeed or fail as `accepted` says, then waits up to 15 s for
/// one more journal line containing `needle`; returns that line.
pub fn reload_and_expect(ctx: &Ctx, accepted: bool, needle: &str) -> Result<String> {
    let before = journal_count(ctx, needle)?;
    let out = systemctl(ctx, &["reload", UNIT])?;
    ensure!(
        out.status.success() == accepted,
        "`systemctl reload {UNIT}` {} ({}): {}",
        if accepted {
            "failed"
        } else {
            "succeeded on a config the daemon must refuse"
        },
        out.status,
        text(&out)
    );
    wait_for(Duration::from_secs(15), || {
        let lines = journal_lines(ctx, needle)?;
        Ok((lines.len() > before).then(|| lines.last().cloned().unwrap_or_default()))
    })?
    .with_context(|| format!("no new \"{needle}\" journal line within 15 s of the reload"))
}

/// Rewrites the config file (the container sees it through its bind mount).
pub fn write_config(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Polls `probe` every 200 ms until it yields a value or `limit` passes (then `None`).
pub fn wait_for<T>(
    limit: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe()? {
            return Ok(Some(value));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// A command's stdout, trimmed.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A command's stdout and stderr, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
    .trim()
    .to_owned()
}
