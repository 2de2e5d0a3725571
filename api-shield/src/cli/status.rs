//! `api-shield status`: the running daemon's version, uptime, attachments, listeners, routes,
//! bans and counters, over the control socket.

use anyhow::Result;

use super::control_args::ControlArgs;
use crate::control::Request;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Prints the status.
pub fn run(args: &Args) -> Result<()> {
    let status = args.control.ask(&Request::Status)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let list = |key: &str, f: &dyn Fn(&serde_json::Value) -> String| -> String {
        let items: Vec<String> = status[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(f)
            .collect();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!(
        "api-shield {} (pid {}), up {}",
        status["version"].as_str().unwrap_or("?"),
        status["pid"],
        humantime::format_duration(std::time::Duration::from_secs(
            status["uptime_secs"].as_u64().unwrap_or(0)
        ))
    );
    println!("config:      {}", status["config"].as_str().unwrap_or("?"));
    println!(
        "attached:    {}{}",
        list("interfaces", &|i| format!(
            "{} ({} mode)",
            i["name"].as_str().unwrap_or("?"),
            i["mode"].as_str().unwrap_or("?")
        )),
        if status["dry_run"].as_bool() == Some(true) {
            " [dry run]"
        } else {
            ""
        }
    );
    println!(
        "listening:   {}",
        list("listening", &|l| format!(
            "{}={}",
            l["name"].as_str().unwrap_or("?"),
            l["addr"].as_str().unwrap_or("?")
        ))
    );
    println!("admin:       {}", status["admin"].as_str().unwrap_or("-"));
    println!(
        "routes:      {}",
        list("routes", &|r| r.as_str().unwrap_or("?").to_owned())
    );
    let pending = list("pending_restart", &|k| k.as_str().unwrap_or("?").to_owned());
    if pending != "-" {
        println!(
            "pending:     {pending} (changed in the config; takes effect at the next restart)"
        );
    }
    match status["active_bans"].as_u64() {
        Some(bans) => println!("active bans: {bans}"),
        None => println!("active bans: - (fast path disabled)"),
    }
    for row in status["counters"].as_array().into_iter().flatten() {
        if row["packets"].as_u64().unwrap_or(0) > 0 {
            println!(
                "  {:<8} {:<22} {:>14} packets",
                row["action"].as_str().unwrap_or("?"),
                row["reason"].as_str().unwrap_or("?"),
                row["packets"]
            );
        }
    }
    Ok(())
}
