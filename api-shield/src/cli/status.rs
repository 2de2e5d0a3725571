//! `api-shield status`: the running daemon's version, uptime, attachments, listeners, routes,
//! fleet link, bans and counters, over the control socket.

use anyhow::Result;

use super::control_args::ControlArgs;
use crate::control::{client::ControlError, protocol::StatusReport, Answer, Request};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Prints the status.
pub(super) fn run(args: &Args) -> Result<()> {
    let Answer::Status(status) = args.control.ask(&Request::Status)? else {
        return Err(ControlError::Unexpected("status").into());
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", text(&status));
    Ok(())
}

/// The status as text.
fn text(status: &StatusReport) -> String {
    use std::fmt::Write as _;
    fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
        if items.is_empty() {
            return "-".to_owned();
        }
        items.iter().map(f).collect::<Vec<_>>().join(", ")
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "api-shield {} (pid {}), up {}",
        status.version,
        status.pid,
        humantime::format_duration(std::time::Duration::from_secs(status.uptime_secs))
    );
    let _ = writeln!(text, "config:      {}", status.config.display());
    let _ = writeln!(
        text,
        "attached:    {}{}",
        list(&status.interfaces, |i| format!(
            "{} ({} mode)",
            i.name, i.mode
        )),
        if status.dry_run { " [dry run]" } else { "" }
    );
    let _ = writeln!(
        text,
        "listening:   {}",
        list(&status.listening, |l| format!("{}={}", l.name, l.addr))
    );
    let _ = writeln!(
        text,
        "admin:       {}",
        status.admin.as_deref().unwrap_or("-")
    );
    let _ = writeln!(text, "routes:      {}", list(&status.routes, String::clone));
    if !status.pending_restart.is_empty() {
        let _ = writeln!(
            text,
            "pending:     {} (changed in the config; takes effect at the next restart)",
            status.pending_restart.join(", ")
        );
    }
    if let Some(fleet) = &status.fleet {
        let _ = writeln!(
            text,
            "fleet:       {} as {}, {}{}; peers {}; last resync {}",
            fleet.name,
            fleet.host,
            if fleet.connected {
                "connected"
            } else {
                "NOT connected (deciding alone)"
            },
            fleet
                .redis
                .as_deref()
                .map(|r| format!(" to {r}"))
                .unwrap_or_default(),
            list(&fleet.peers, String::clone),
            fleet.last_resync.as_deref().unwrap_or("never")
        );
    }
    match status.active_bans {
        Some(bans) => {
            let _ = writeln!(text, "active bans: {bans}");
        }
        None => text.push_str("active bans: - (fast path disabled)\n"),
    }
    for row in status.counters.iter().filter(|row| row.packets > 0) {
        let _ = writeln!(
            text,
            "  {:<8} {:<22} {:>14} packets",
            row.action, row.reason, row.packets
        );
    }
    text
}
