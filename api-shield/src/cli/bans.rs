//! `api-shield bans`: the bans in force, with wall-clock expiry.

use anyhow::Result;

use super::maps_args::MapsArgs;
use crate::{
    control::{client::ControlError, Answer, Request},
    fastpath::{Ban, SystemClock},
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Print JSON (an array of bans).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub maps: MapsArgs,
}

/// Lists the bans.
pub(super) fn run(args: &Args) -> Result<()> {
    let bans: Vec<Ban> = match args.maps.via_daemon(&Request::Bans)? {
        Some(Answer::Bans { bans }) => bans,
        Some(_) => return Err(ControlError::Unexpected("bans").into()),
        None => args.maps.open()?.1.bans(&SystemClock)?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&bans)?);
        return Ok(());
    }
    if bans.is_empty() {
        println!("no bans in force");
        return Ok(());
    }
    let rows: Vec<[String; 4]> = bans
        .into_iter()
        .map(|ban| {
            let left = ban.remaining_secs.map_or_else(
                || "-".to_owned(),
                |s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string(),
            );
            [
                ban.target,
                ban.expires.unwrap_or_else(|| "never".to_owned()),
                left,
                ban.reason,
            ]
        })
        .collect();
    print!(
        "{}",
        table(["TARGET", "EXPIRES (UTC)", "LEFT", "REASON"], &rows)
    );
    Ok(())
}

/// Columns as wide as their widest cell, two spaces apart (a ban of years has a long LEFT).
fn table(header: [&str; 4], rows: &[[String; 4]]) -> String {
    use std::fmt::Write as _;
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: [&str; 4]| {
        let _ = writeln!(
            text,
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    };
    line(header);
    for row in rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_widen_their_column() {
        let rows = [
            [
                "2001:db8:1234:5678:9abc:def0:1234:5678/128".to_owned(),
                "2031-12-03T17:00:00Z".to_owned(),
                "4years 11months 30days 1h".to_owned(),
                "abuse".to_owned(),
            ],
            [
                "10.0.0.1/32".to_owned(),
                "never".to_owned(),
                "-".to_owned(),
                "manual".to_owned(),
            ],
        ];
        let text = table(["TARGET", "EXPIRES (UTC)", "LEFT", "REASON"], &rows);
        let starts: Vec<Option<usize>> = text
            .lines()
            .map(|l| l.find("abuse").or(l.find("manual")).or(l.find("REASON")))
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
    }
}
