//! Reads a blocklist in the common formats: one address or CIDR per line, with `#` and `;`
//! comments (`FireHOL` netsets, Spamhaus DROP's `1.10.16.0/20 ; SBL256894`), anything after the
//! first word ignored; and JSON lines with a `cidr` key (Spamhaus DROP's `drop_v4.json`,
//! whose lines without one, such as its metadata trailer, are skipped).
//!
//! Each entry passes the operator's guard rails (a network with host bits, one broader than
//! `fastpath.guard`, or one the allow list covers entirely is refused). A refused line is
//! reported with its number and never rejects the rest of the list.

use std::{borrow::Cow, collections::HashSet};

use ipnet::IpNet;

use crate::{
    config::{parse_network, GuardRails},
    fastpath::RuleKey,
};

/// Refused lines kept with their text for the log; the rest are only counted.
pub const REPORTED_REFUSALS: usize = 20;

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub why: String,
}

/// A list as read.
#[derive(Debug, Default)]
pub struct ParsedList {
    /// Its entries, as the deny table keys them (duplicates once).
    pub entries: HashSet<RuleKey>,
    /// Lines refused.
    pub refused: usize,
    /// The first [`REPORTED_REFUSALS`] of them.
    pub refusals: Vec<Refusal>,
}

impl ParsedList {
    fn refuse(&mut self, line: usize, why: String) {
        self.refused += 1;
        if self.refusals.len() < REPORTED_REFUSALS {
            self.refusals.push(Refusal { line, why });
        }
    }
}

/// The entry a line names: `None` for a blank or comment line, an error for a bad one.
fn entry_of(line: &str) -> Option<Result<Cow<'_, str>, String>> {
    let trimmed = line.trim();
    if trimmed.starts_with('{') {
        return match serde_json::from_str::<serde_json::Value>(trimmed) {
            Ok(value) => value.get("cidr").map(|cidr| {
                cidr.as_str()
                    .map(|c| Cow::Owned(c.to_owned()))
                    .ok_or_else(|| "`cidr` is not a string".to_owned())
            }),
            Err(error) => Some(Err(format!("not a JSON line: {error}"))),
        };
    }
    let content = match trimmed.find(['#', ';']) {
        Some(at) => &trimmed[..at],
        None => trimmed,
    };
    content
        .split_whitespace()
        .next()
        .map(|w| Ok(Cow::Borrowed(w)))
}

/// Reads `text` into entries, judging each by `guard` and `allow`.
pub fn parse(text: &[u8], guard: GuardRails, allow: &[IpNet]) -> ParsedList {
    let mut list = ParsedList::default();
    for (index, raw) in text.split(|b| *b == b'\n').enumerate() {
        let number = index + 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            list.refuse(number, "not UTF-8 text".to_owned());
            continue;
        };
        let word = match entry_of(line) {
            None => continue,
            Some(Ok(word)) => word,
            Some(Err(why)) => {
                list.refuse(number, why);
                continue;
            }
        };
        let net = match parse_network(&word) {
            None => {
                // The list's text may be anyone's: quoted and cut short in the log.
                let shown: String = word.chars().take(64).collect();
                list.refuse(number, format!("{shown:?} is not an IP address or CIDR"));
                continue;
            }
            Some(Err(error)) => {
                list.refuse(number, error.to_string());
                continue;
            }
            Some(Ok(net)) => net,
        };
        if let Err(error) = guard
            .check_breadth(&net)
            .and_then(|()| GuardRails::check_allow(&net, allow))
        {
            list.refuse(number, error.to_string());
            continue;
        }
        list.entries.insert(RuleKey::of(&net));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, allow: &[&str]) -> ParsedList {
        let allow: Vec<IpNet> = allow.iter().map(|a| a.parse().unwrap()).collect();
        parse(text.as_bytes(), GuardRails::default(), &allow)
    }

    #[test]
    fn spamhaus_firehol_and_json_lines_are_read() {
        let list = read(
            "; Spamhaus DROP List 2026/12/07\n\
             1.10.16.0/20 ; SBL256894\n\
             # FireHOL level1\n\
             \n\
             203.0.113.7\n\
             2001:db8::/32 trailing words\n\
             {\"cidr\":\"198.51.100.0/24\",\"sblid\":\"SBL1\",\"rir\":\"arin\"}\n\
             {\"type\":\"metadata\",\"timestamp\":1}\n\
             203.0.113.7/32\r\n",
            &[],
        );
        assert_eq!(list.refused, 0, "{:?}", list.refusals);
        let expected: HashSet<RuleKey> = [
            "1.10.16.0/20",
            "203.0.113.7/32",
            "2001:db8::/32",
            "198.51.100.0/24",
        ]
        .iter()
        .map(|n| RuleKey::of(&n.parse().unwrap()))
        .collect();
        assert_eq!(list.entries, expected);
    }

    #[test]
    fn a_bad_line_is_refused_with_its_number_and_the_rest_applies() {
        let list = read(
            "10.1.0.0/16\nnot-an-address\n10.2.0.7/24\n0.0.0.0/0\n192.168.1.0/24\n\
             {\"cidr\":5}\n{broken\n10.3.0.0/16\n",
            &["192.168.0.0/16"],
        );
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.refused, 6);
        let lines: Vec<usize> = list.refusals.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7]);
        assert!(list.refusals[0].why.contains("not an IP address"));
        assert!(list.refusals[1].why.contains("host bits"));
        assert!(list.refusals[2].why.contains("covers"));
        assert!(list.refusals[3].why.contains("allow list"));
    }

    #[test]
    fn only_the_first_refusals_are_kept_with_their_text() {
        let text = "x\n".repeat(REPORTED_REFUSALS + 5);
        let list = read(&text, &[]);
        assert_eq!(list.refused, REPORTED_REFUSALS + 5);
        assert_eq!(list.refusals.len(), REPORTED_REFUSALS);
    }
}
