//! `api-shield bans`: the bans in force, with wall-clock expiry and where each came from
//! (`local` for this host's own, else the fleet host that made it).

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
    let rows: Vec<[String; 5]> = bans
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
                ban.origin.unwrap_or_else(|| "local".to_owned()),
                ban.reason,
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            ["TARGET", "EXPIRES (UTC)", "LEFT", "ORIGIN", "REASON"],
            &rows
        )
    );
    Ok(())
}

/// Columns as wide as their widest cell, two spaces apart (a ban of years has a long LEFT,
/// which is aligned right); the last column is not padded.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: [&str; N]| {
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i + 1 == N {
                text.push_str(cell);
            } else if i == 2 {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
                text.push_str("  ");
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
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
                "web-1".to_owned(),
                "abuse".to_owned(),
            ],
            [
                "10.0.0.1/32".to_owned(),
                "never".to_owned(),
                "-".to_owned(),
                "local".to_owned(),
                "manual".to_owned(),
            ],
        ];
        let text = table(
            ["TARGET", "EXPIRES (UTC)", "LEFT", "ORIGIN", "REASON"],
            &rows,
        );
        let starts: Vec<Option<usize>> = text
            .lines()
            .map(|l| l.find("abuse").or(l.find("manual")).or(l.find("REASON")))
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
    }
}
