//! `api-shield top`: a live view of the sources the XDP program is dropping and the busiest
//! routes (requests per second between refreshes), from the running daemon. Quit with q.

use std::{
    collections::HashMap,
    io::{IsTerminal, Write},
    time::Duration,
};

use anyhow::Result;
use crossterm::{
    event::{self, Event, KeyCode, KeyModifiers},
    terminal,
};

use super::control_args::ControlArgs;
use crate::control::{
    client::{ask, ControlError},
    protocol::TopReport,
    Answer, Request,
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Print one view and exit (for scripts; also what happens without a terminal). Rates are
    /// measured over one interval, so it takes that long.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// Runs the view.
pub(super) fn run(args: &Args) -> Result<()> {
    let socket = args.control.socket()?;
    let interval = Duration::from_secs_f64(args.interval.max(0.1));
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if args.once || !terminal {
        if !args.once {
            eprintln!("top: not a terminal, printing one view (--once)");
        }
        // Rates need two samples: the view is of the interval between them.
        let first = ask_top(&socket)?;
        std::thread::sleep(interval);
        let second = ask_top(&socket)?;
        print!("{}", frame(&second, Some(&route_totals(&first)), interval));
        return Ok(());
    }
    terminal::enable_raw_mode()?;
    let result = (|| -> Result<()> {
        let mut previous: Option<HashMap<String, u64>> = None;
        loop {
            let top = ask_top(&socket)?;
            let text = frame(&top, previous.as_ref(), interval).replace('\n', "\r\n");
            let mut out = std::io::stdout();
            write!(out, "\x1b[2J\x1b[H{text}\r\n(q to quit)")?;
            out.flush()?;
            previous = Some(route_totals(&top));
            if event::poll(interval)? {
                if let Event::Key(key) = event::read()? {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if key.code == KeyCode::Char('q') || key.code == KeyCode::Esc || ctrl_c {
                        return Ok(());
                    }
                }
            }
        }
    })();
    terminal::disable_raw_mode()?;
    println!();
    result
}

fn ask_top(socket: &std::path::Path) -> Result<TopReport, ControlError> {
    match ask(socket, &Request::Top)? {
        Answer::Top(top) => Ok(top),
        _ => Err(ControlError::Unexpected("top")),
    }
}

fn route_totals(top: &TopReport) -> HashMap<String, u64> {
    top.routes
        .iter()
        .map(|r| (r.route.clone(), r.requests))
        .collect()
}

/// One screen of text.
fn frame(top: &TopReport, previous: Option<&HashMap<String, u64>>, interval: Duration) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("SOURCES BEING DROPPED\n");
    let _ = writeln!(
        text,
        "{:<40} {:<22} {:>8} {:>10}",
        "SOURCE", "REASON", "EVENTS", "LAST SEEN"
    );
    if top.drops.is_empty() {
        text.push_str("(none)\n");
    }
    for drop in &top.drops {
        let _ = writeln!(
            text,
            "{:<40} {:<22} {:>8} {:>9}s",
            drop.source, drop.reason, drop.events, drop.last_seen_secs
        );
    }
    text.push_str("\nBUSIEST ROUTES\n");
    let _ = writeln!(text, "{:<40} {:>12} {:>12}", "ROUTE", "REQ/S", "TOTAL");
    let mut routes: Vec<(String, u64, f64)> = route_totals(top)
        .into_iter()
        .map(|(route, total)| {
            let rate = previous.and_then(|p| p.get(&route)).map_or(0.0, |before| {
                total.saturating_sub(*before) as f64 / interval.as_secs_f64()
            });
            (route, total, rate)
        })
        .collect();
    routes.sort_by(|a, b| b.2.total_cmp(&a.2).then(b.1.cmp(&a.1)));
    for (route, total, rate) in routes.iter().take(20) {
        let _ = writeln!(text, "{route:<40} {rate:>12.1} {total:>12}");
    }
    text
}
