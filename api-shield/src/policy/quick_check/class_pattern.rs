//! The commonest shape of `pattern` in API schemas, checked without a regex engine:
//! `^[class]{m,n}$` (or `+`, `*`, `{m}`, `{m,}`) with a class of ASCII characters and ranges,
//! as in `^[A-Z0-9-]{4,16}$` or `^[a-z_]+$`. Every regex dialect reads such a pattern the same
//! way: the whole string is characters of the class, between m and n of them. Any other shape
//! stays with `jsonschema`'s engine.

/// A compiled class pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClassPattern {
    /// Indexed by byte: whether it is a character of the class (every byte past ASCII is not).
    table: [bool; 256],
    min: usize,
    max: usize,
}

impl ClassPattern {
    /// `pattern` compiled, or `None` when it has another shape.
    pub(super) fn parse(pattern: &str) -> Option<ClassPattern> {
        let body = pattern.strip_prefix("^[")?.strip_suffix('$')?;
        let (class, quantifier) = body.split_once(']')?;
        let table = class_table(class.as_bytes())?;
        let (min, max) = match quantifier {
            "+" => (1, usize::MAX),
            "*" => (0, usize::MAX),
            _ => {
                let counts = quantifier.strip_prefix('{')?.strip_suffix('}')?;
                match counts.split_once(',') {
                    None => {
                        let n = count(counts)?;
                        (n, n)
                    }
                    Some((min, "")) => (count(min)?, usize::MAX),
                    Some((min, max)) => (count(min)?, count(max)?),
                }
            }
        };
        (min <= max).then_some(ClassPattern { table, min, max })
    }

    /// Whether the whole of `text` matches.
    pub(super) fn matches(&self, text: &str) -> bool {
        (self.min..=self.max).contains(&text.len())
            && text.bytes().all(|b| self.table[usize::from(b)])
    }

    /// Whether the class holds neither a quote nor a backslash (nor, being printable, a
    /// control character): then a run of class bytes after a string's opening quote is plain
    /// string text, and [`Self::match_written`] can read the string and match it at once.
    pub(super) fn reads_written(&self) -> bool {
        !self.table[usize::from(b'"')] && !self.table[usize::from(b'\\')]
    }

    /// From the byte after a string's opening quote: the length of the string when it is all
    /// class characters, closed by its quote, and matches. `None` otherwise: a mismatch, or an
    /// escape (whose decoded text is not judged here).
    pub(super) fn match_written(&self, text: &[u8]) -> Option<usize> {
        let length = text
            .iter()
            .position(|&b| !self.table[usize::from(b)])
            .unwrap_or(text.len());
        (text.get(length) == Some(&b'"') && (self.min..=self.max).contains(&length))
            .then_some(length)
    }
}

/// Digits only (no sign, no spaces), as a regex quantifier has them.
fn count(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The class between the brackets: printable ASCII characters and ranges `a-z`; a `-` first or
/// last is itself. Negation, escapes, nested brackets and anything non-ASCII are another shape.
fn class_table(class: &[u8]) -> Option<[bool; 256]> {
    let plain = |b: u8| (b' '..=b'~').contains(&b) && !matches!(b, b'\\' | b'[' | b']' | b'^');
    if class.is_empty() {
        return None;
    }
    let mut table = [false; 256];
    let mut at = 0;
    while at < class.len() {
        let first = class[at];
        if !plain(first) {
            return None;
        }
        match class.get(at + 1..at + 3) {
            Some(&[b'-', last]) if first != b'-' && last != b'-' => {
                if !plain(last) || last < first {
                    return None;
                }
                table[usize::from(first)..=usize::from(last)].fill(true);
                at += 3;
            }
            _ => {
                // A `-` inside is a range that did not form: another shape.
                if first == b'-' && at != 0 && at != class.len() - 1 {
                    return None;
                }
                table[usize::from(first)] = true;
                at += 1;
            }
        }
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ClassPattern;

    #[test]
    fn reads_the_class_shapes_and_nothing_else() {
        for (pattern, class_of, min, max) in [
            ("^[A-Z0-9-]{4,16}$", "AZ09-", 4, 16),
            ("^[a-z_]+$", "az_", 1, usize::MAX),
            ("^[-a]*$", "-a", 0, usize::MAX),
            ("^[x]{3}$", "x", 3, 3),
            ("^[x]{3,}$", "x", 3, usize::MAX),
        ] {
            let compiled = ClassPattern::parse(pattern).unwrap();
            assert!(
                class_of.bytes().all(|b| compiled.table[usize::from(b)]),
                "{pattern}"
            );
            assert_eq!((compiled.min, compiled.max), (min, max), "{pattern}");
        }
        for pattern in [
            "[a-z]+",
            "^[a-z]+",
            "[a-z]+$",
            "^[^a-z]+$",
            "^[\\d]+$",
            "^[a-z]{2,1}$",
            "^[a-z]{,3}$",
            "^[a-z]{+3}$",
            "^[a-z]?$",
            "^[z-a]+$",
            "^[a-c-e]+$",
            "^[é]+$",
            "^[]+$",
            "^[a-z]+[0-9]$",
            "^[a-z]{1, 2}$",
        ] {
            assert_eq!(ClassPattern::parse(pattern), None, "{pattern}");
        }
    }

    #[test]
    fn a_class_with_a_quote_or_backslash_is_not_read_as_written() {
        for pattern in ["^[a\"]+$", "^[ -~]+$", "^[!-#]+$"] {
            let compiled = ClassPattern::parse(pattern).unwrap();
            assert!(!compiled.reads_written(), "{pattern}");
        }
        let plain = ClassPattern::parse("^[a-z]{2,3}$").unwrap();
        assert_eq!(plain.match_written(b"ab\", rest"), Some(2));
        assert_eq!(plain.match_written(b"abcd\""), None, "too long");
        assert_eq!(plain.match_written(b"a\""), None, "too short");
        assert_eq!(plain.match_written(b"ab"), None, "unclosed");
        assert_eq!(plain.match_written(b"a\\u0062\""), None, "escaped");
    }

    #[test]
    fn matches_as_jsonschema_does() {
        let strings = [
            "",
            "A",
            "ABCD",
            "SKU-0001",
            "sku-0001",
            "ABCDEFGHIJKLMNOPQ",
            "ABCD\n",
            "\nABCD",
            "AB CD",
            "ÄBCD",
            "AB_D",
            "0000",
            "----",
            "a",
            "ab",
            "abc",
            "a-b",
            "ÿ",
            "😀😀😀😀",
        ];
        for pattern in [
            "^[A-Z0-9-]{4,16}$",
            "^[a-z]+$",
            "^[-ab]*$",
            "^[a-c]{2}$",
            "^[ -~]{3,}$",
        ] {
            let compiled = ClassPattern::parse(pattern).unwrap();
            let engine = jsonschema::validator_for(&json!({"pattern": pattern})).unwrap();
            for s in strings {
                let expected = engine.is_valid(&json!(s));
                assert_eq!(compiled.matches(s), expected, "{pattern} on {s:?}");
                // Read as written in JSON text: a yes is always right; an escaped string is
                // never a yes.
                if !compiled.reads_written() {
                    continue;
                }
                let written = json!(s).to_string();
                let read = compiled.match_written(&written.as_bytes()[1..]);
                if read.is_some() {
                    assert!(expected, "{pattern} read {written} as written");
                    assert_eq!(read, Some(s.len()));
                }
                if expected && !written[1..].contains('\\') {
                    assert_eq!(read, Some(s.len()), "{pattern} on {written}");
                }
            }
        }
    }
}
