//! The operator's sequence, one check per step, run against the booted container: start (the
//! notify unit becomes active), XDP attached in driver mode, HTTPS served from the client
//! namespace, ban and unban through the control socket, reload (accepted, then refused), the
//! watchdog pinged, stop (clean, program detached, every request in the access-log file under
//! `LogsDirectory=`). And the exposure score of the staged unit.
//! Each step returns what it saw, or an error saying what was expected.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};

use super::{
    config, host,
    probes::{
        banned_drops, curl, journal_count, reload_and_expect, show, stdout, systemctl, text, url,
        wait_for, write_config, xdp_state,
    },
    sandbox::{Sandbox, SERVER_IF},
};

/// The unit under test.
pub const UNIT: &str = "api-shield";
/// The installed binary, inside the container.
pub const BINARY: &str = "/usr/local/bin/api-shield";
/// Bound on one systemctl (or CLI) call inside the container.
pub const SYSTEMCTL_LIMIT: Duration = Duration::from_secs(90);

/// What the steps work with.
pub struct Ctx<'a> {
    /// The booted container and its namespaces.
    pub sandbox: &'a Sandbox,
    /// The config file on the host side of the bind (`stage/etc/api-shield/api-shield.toml`).
    pub config: PathBuf,
}

/// A step: its name and its check.
pub type Step = (&'static str, fn(&Ctx) -> Result<String>);

/// The steps, in order; each relies on the ones before it.
pub const SEQUENCE: &[Step] = &[
    ("start", start),
    ("xdp attached in driver mode", xdp),
    ("https served through the shield", https),
    ("ban and unban", ban),
    ("reload accepted, then refused", reload),
    ("watchdog pinged", watchdog),
    ("stop", stop),
];

/// Starts the demo API (the upstream) as a transient unit and waits until it answers.
pub fn demo_api(ctx: &Ctx) -> Result<()> {
    let out = ctx.sandbox.inside(
        SYSTEMCTL_LIMIT,
        &[
            "systemd-run",
            "--unit=demo-api",
            BINARY,
            "demo-api",
            "--bind",
            config::DEMO_API_BIND,
        ],
    )?;
    ensure!(
        out.status.success(),
        "systemd-run demo-api failed: {}",
        text(&out)
    );
    let url = format!("http://{}/health", config::DEMO_API_BIND);
    let ns = ctx.sandbox.server_ns.clone();
    wait_for(Duration::from_secs(15), || {
        let out = host::in_netns(
            &ns,
            Duration::from_secs(5),
            &["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", &url],
        )?;
        Ok((stdout(&out) == "200").then_some(()))
    })?
    .context("the demo API did not answer on /health within 15 s")
}

/// a. `systemctl start` returns 0 once READY arrives; the unit is active/running.
fn start(ctx: &Ctx) -> Result<String> {
    let out = systemctl(ctx, &["start", UNIT])?;
    ensure!(
        out.status.success(),
        "`systemctl start {UNIT}` failed ({}): {}",
        out.status,
        text(&out)
    );
    let state = show(ctx, &["ActiveState", "SubState", "MainPID"])?;
    ensure!(
        state["ActiveState"] == "active" && state["SubState"] == "running",
        "after start the unit is {}/{}, not active/running",
        state["ActiveState"],
        state["SubState"]
    );
    Ok(format!("active/running, MainPID {}", state["MainPID"]))
}

/// b. The veth carries an XDP program in driver mode (`xdp`, not `xdpgeneric`).
fn xdp(ctx: &Ctx) -> Result<String> {
    let (mode, id) = xdp_state(ctx)?.context("no XDP program on the server's veth")?;
    ensure!(
        mode == "xdp",
        "the program is attached as `{mode}`, not `xdp` (driver mode)"
    );
    Ok(format!("{SERVER_IF}: xdp, prog id {id}"))
}

/// c. A client in the other namespace gets 200 from the demo API through the shield.
fn https(ctx: &Ctx) -> Result<String> {
    let (ok, code, err) = curl(ctx, 5)?;
    ensure!(
        ok && code == "200",
        "HTTPS from the client: expected 200, got `{code}` {err}"
    );
    Ok(format!("GET {} -> 200", url(ctx)))
}

/// d. A ban through the control socket drops the client at the NIC (counted as banned); an
/// unban lets it through again.
fn ban(ctx: &Ctx) -> Result<String> {
    let client = ctx.sandbox.client_addr.as_str();
    let before = banned_drops(ctx)?;
    let out = ctx.sandbox.inside(
        SYSTEMCTL_LIMIT,
        &[
            BINARY,
            "ban",
            client,
            "--ttl",
            "10m",
            "--reason",
            "systemd-test",
        ],
    )?;
    ensure!(
        out.status.success(),
        "`api-shield ban {client}` failed ({}): {}",
        out.status,
        text(&out)
    );
    ensure!(
        journal_count(ctx, "source banned at the NIC by an operator")? >= 1,
        "the ban did not go through the daemon (no \"source banned at the NIC by an operator\" audit line)"
    );
    let (ok, code, _) = curl(ctx, 3)?;
    ensure!(
        !ok && code != "200",
        "a banned client was served (HTTP `{code}`)"
    );
    let after = banned_drops(ctx)?;
    ensure!(
        after > before,
        "the drop counter for reason `banned` did not increase ({before} -> {after})"
    );
    let out = ctx
        .sandbox
        .inside(SYSTEMCTL_LIMIT, &[BINARY, "unban", client])?;
    ensure!(
        out.status.success(),
        "`api-shield unban {client}` failed ({}): {}",
        out.status,
        text(&out)
    );
    let (ok, code, err) = curl(ctx, 5)?;
    ensure!(
        ok && code == "200",
        "after the unban: expected 200, got `{code}` {err}"
    );
    Ok(format!(
        "banned {client}: curl failed, drop/banned {before} -> {after}; unbanned: 200"
    ))
}

/// e. A valid change is reloaded in place; a bad file is refused with its name (and `systemctl
/// reload` fails: the unit's `ExecReload=` waits for the outcome), the daemon keeps running (same
/// PID) and serving; the good file is restored and reloaded.
fn reload(ctx: &Ctx) -> Result<String> {
    let pid = show(ctx, &["MainPID"])?["MainPID"].clone();
    write_config(&ctx.config, &config::changed(SERVER_IF))?;
    reload_and_expect(ctx, true, "config reloaded")?;

    write_config(&ctx.config, &config::refused(SERVER_IF))?;
    let refusal = reload_and_expect(ctx, false, "config reload refused")?;
    ensure!(
        refusal.contains("/etc/api-shield/api-shield.toml"),
        "the refusal does not name the file: {refusal}"
    );
    let state = show(ctx, &["ActiveState", "MainPID"])?;
    ensure!(
        state["ActiveState"] == "active" && state["MainPID"] == pid,
        "after a refused reload the unit is {} with MainPID {} (was active with {pid})",
        state["ActiveState"],
        state["MainPID"]
    );
    let (ok, code, err) = curl(ctx, 5)?;
    ensure!(
        ok && code == "200",
        "after a refused reload: expected 200, got `{code}` {err}"
    );

    write_config(&ctx.config, &config::good(SERVER_IF))?;
    reload_and_expect(ctx, true, "config reloaded")?;
    Ok(format!(
        "deny {} reloaded; unknown key refused (MainPID {pid} kept, still 200); restored",
        config::RELOAD_DENY
    ))
}

/// f. `WatchdogTimestampMonotonic` advances (the daemon pings every 15 s of `WatchdogSec=30s`).
fn watchdog(ctx: &Ctx) -> Result<String> {
    let read = || -> Result<u64> {
        let value = &show(ctx, &["WatchdogTimestampMonotonic"])?["WatchdogTimestampMonotonic"];
        value
            .parse()
            .with_context(|| format!("WatchdogTimestampMonotonic `{value}`"))
    };
    let first = read()?;
    let started = Instant::now();
    let next = wait_for(Duration::from_secs(40), || {
        let now = read()?;
        Ok((now > first).then_some(now))
    })?
    .context("WatchdogTimestampMonotonic did not advance within 40 s")?;
    Ok(format!(
        "advanced by {:.1} s (waited {:.1?})",
        (next - first) as f64 / 1e6,
        started.elapsed()
    ))
}

/// g. `systemctl stop` returns 0, the unit is inactive with Result=success, the daemon logged
/// "stopped", and the program is detached.
fn stop(ctx: &Ctx) -> Result<String> {
    let started = Instant::now();
    let out = systemctl(ctx, &["stop", UNIT])?;
    let took = started.elapsed();
    ensure!(
        out.status.success(),
        "`systemctl stop {UNIT}` failed ({}): {}",
        out.status,
        text(&out)
    );
    let state = show(ctx, &["ActiveState", "Result"])?;
    ensure!(
        state["ActiveState"] == "inactive" && state["Result"] == "success",
        "after stop the unit is {} with Result={}",
        state["ActiveState"],
        state["Result"]
    );
    ensure!(
        journal_count(ctx, "\"message\":\"stopped\"")? >= 1,
        "the journal has no \"stopped\" line from the daemon"
    );
    if let Some((mode, id)) = xdp_state(ctx)? {
        bail!("after stop {SERVER_IF} still has an XDP program ({mode}, id {id})");
    }
    let served = access_log_lines(ctx)?;
    Ok(format!(
        "inactive, Result=success, detached, {served} requests in {}, in {took:.1?}",
        config::ACCESS_LOG
    ))
}

/// The access-log file the unit's sandbox lets the daemon write: every line an access line,
/// and one with status 200 for each request served before (the HTTPS step, the unban, the
/// reloads), all written by the time the stop returned.
fn access_log_lines(ctx: &Ctx) -> Result<usize> {
    let out = ctx
        .sandbox
        .inside(Duration::from_secs(20), &["cat", config::ACCESS_LOG])?;
    ensure!(
        out.status.success(),
        "no access log at {}: {}",
        config::ACCESS_LOG,
        text(&out)
    );
    let log = String::from_utf8_lossy(&out.stdout);
    ensure!(
        log.lines().all(|l| l.contains("\"target\":\"access\"")),
        "lines other than access lines in {}:\n{log}",
        config::ACCESS_LOG
    );
    let served = log
        .lines()
        .filter(|l| l.contains("\"route\":\"user\"") && l.contains("\"status\":200"))
        .count();
    ensure!(
        served >= 3,
        "{served} served requests in {} (the steps made at least 3):\n{log}",
        config::ACCESS_LOG
    );
    Ok(served)
}

/// h. The staged unit's exposure score is 2.0 or lower.
pub fn security(unit: &Path) -> Result<String> {
    let unit = unit.to_string_lossy();
    let out = host::run(
        Duration::from_mins(1),
        "systemd-analyze",
        &["security", "--offline=true", "--threshold=20", &unit],
    )?;
    let verdict = stdout(&out)
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    ensure!(
        out.status.success(),
        "systemd-analyze security --threshold=20 failed ({}): {verdict} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(verdict.trim_start_matches("→ ").to_owned())
}

/// The last 100 journal lines of the unit, for failure reports.
pub fn journal(sandbox: &Sandbox) -> String {
    match sandbox.inside(
        Duration::from_secs(20),
        &["journalctl", "-u", UNIT, "--no-pager", "-n", "100"],
    ) {
        Ok(out) => format!(
            "--- journalctl -u {UNIT} --no-pager -n 100 (in the container)\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(error) => format!("(no journal: {error:#})"),
    }
}
