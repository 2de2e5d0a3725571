//! The quick check's single pass over a body's bytes: a strict JSON scanner (RFC 8259, as
//! `serde_json` reads it) that hands each value to the rule its place in the document has,
//! building nothing. Whatever it cannot decide exactly is "not sure", and the body goes down
//! the full path:
//! - a string with an escape where the rule reads the string (length, value keywords), a name
//!   with an escape, or a `\u` escape of a surrogate;
//! - an integer outside `u64`/`i64`, a float where only integers are allowed, a float with
//!   value keywords, or a float within a few units of the last place of a bound (parsers may
//!   round the last bit differently);
//! - a repeated member name, an object with more than 16 names its schema does not name, or
//!   containers nested deeper than 127 levels.

use super::{class_pattern::ClassPattern, Check, Num, ObjectCheck, Rule, Types};
use crate::policy::json_tape::{scalar_is_valid, Scalar};

/// Containers nested deeper than this are refused by `serde_json`, and so are not sure here.
const MAX_DEPTH: usize = 127;

/// The bytes a string's plain run ends at: the closing quote, an escape, a control character.
const STOPS_A_STRING: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Where the run of plain string bytes from `at` ends: at a quote, a backslash, a control
/// character or the end of `bytes`. Eight bytes at a time where eight remain (no crate offers
/// this on a slice position, and `memchr` finds at most three distinct bytes, not a range).
fn plain_run_end(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A byte's high bit is set where it is zero: exact for the lowest such byte, which is
    // all that is read (a borrow only runs upwards from a true zero).
    let zeros = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    while let Some(eight) = bytes.get(at..at + 8) {
        let mut word = [0_u8; 8];
        word.copy_from_slice(eight);
        let word = u64::from_le_bytes(word);
        let stops = zeros(word ^ (ONES * u64::from(b'"')))
            | zeros(word ^ (ONES * u64::from(b'\\')))
            // Below 0x20: subtracting 0x20 borrows, and the byte had no high bit.
            | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS);
        if stops != 0 {
            return at + (stops.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while bytes
        .get(at)
        .is_some_and(|&b| !STOPS_A_STRING[usize::from(b)])
    {
        at += 1;
    }
    at
}

/// An object with more member names than this that its schema does not name is not sure (they
/// are compared pairwise for a repeated one).
const FEW_NAMES: usize = 16;

/// Whether `body` is one JSON text that satisfies `rule` (`false`: not sure).
pub(super) fn accepts(rule: &Rule, body: &[u8]) -> bool {
    // One check of the whole text makes every string slice below valid UTF-8.
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let mut scanner = Scanner {
        text,
        at: 0,
        names: Vec::new(),
    };
    scanner.skip_space();
    if !scanner.value(rule, 0) {
        return false;
    }
    scanner.skip_space();
    scanner.at == body.len()
}

struct Scanner<'b> {
    text: &'b str,
    at: usize,
    /// The member names the schema does not name, of the objects being scanned, innermost
    /// last: each object finds a repeated one among its own and removes them when it ends.
    names: Vec<&'b str>,
}

/// A scanned string: its text between the quotes, and whether that contains escapes (then it
/// is not the string's value).
struct Text<'b> {
    raw: &'b str,
    escaped: bool,
}

impl<'b> Scanner<'b> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Consumes `byte` (after any whitespace); `false` if it is something else.
    fn expect(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, rule: &Rule, depth: usize) -> bool {
        let check = match rule {
            Rule::Never => return false,
            Rule::Any => None,
            Rule::Check(check) => Some(&**check),
        };
        match self.peek() {
            Some(b'{') => self.object(check, depth),
            Some(b'[') => self.array(check, depth),
            Some(b'"') => match check.and_then(|c| Some((c, c.pattern.as_ref()?))) {
                Some((check, pattern)) if pattern.reads_written() => {
                    self.patterned_string(check, pattern)
                }
                _ => self
                    .string()
                    .is_some_and(|text| check.is_none_or(|c| string_holds(c, &text))),
            },
            Some(b't') => {
                self.literal("true") && scalar_holds(check, Types::BOOLEAN, Scalar::Bool(true))
            }
            Some(b'f') => {
                self.literal("false") && scalar_holds(check, Types::BOOLEAN, Scalar::Bool(false))
            }
            Some(b'n') => self.literal("null") && scalar_holds(check, Types::NULL, Scalar::Null),
            Some(b'-' | b'0'..=b'9') => self
                .number()
                .is_some_and(|n| check.is_none_or(|c| number_holds(c, n))),
            _ => false,
        }
    }

    fn literal(&mut self, word: &str) -> bool {
        let found = self.text[self.at..].starts_with(word);
        self.at += word.len();
        found
    }

    /// A string from its opening quote.
    fn string(&mut self) -> Option<Text<'b>> {
        let bytes = self.text.as_bytes();
        let start = self.at + 1;
        // A local index: the loop keeps it in a register instead of storing `self.at` per byte.
        let mut at = start;
        let mut escaped = false;
        loop {
            // Skip the plain bytes, then look at the one that stopped the run.
            at = plain_run_end(bytes, at);
            match *bytes.get(at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    match *bytes.get(at + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                        b'u' => {
                            let hex = self.text.get(at + 2..at + 6)?;
                            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                                return None;
                            }
                            let unit = u16::from_str_radix(hex, 16).ok()?;
                            // Surrogates must pair up; left to the full path.
                            if (0xD800..0xE000).contains(&unit) {
                                return None;
                            }
                            at += 6;
                        }
                        _ => return None,
                    }
                }
                // Control characters must be escaped.
                0..0x20 => return None,
                _ => at += 1,
            }
        }
        self.at = at + 1;
        Some(Text {
            raw: &self.text[start..at],
            escaped,
        })
    }

    /// A string from its opening quote, under a check whose class pattern reads strings as
    /// written: one pass over its bytes both finds its end and matches the pattern. The class
    /// is ASCII, so the string's length in characters is its length in bytes.
    fn patterned_string(&mut self, check: &Check, pattern: &ClassPattern) -> bool {
        let start = self.at + 1;
        let Some(length) = pattern.match_written(&self.text.as_bytes()[start..]) else {
            return false;
        };
        self.at = start + length + 1;
        check.min_length.is_none_or(|min| length >= min)
            && check.max_length.is_none_or(|max| length <= max)
            && scalar_holds(
                Some(check),
                Types::STRING,
                Scalar::String(&self.text[start..start + length]),
            )
    }

    /// A number, by the JSON grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Option<Num> {
        let start = self.at;
        let bytes = self.text.as_bytes();
        let digits = |at: &mut usize| {
            let first = *at;
            while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > first
        };
        let mut at = start;
        let negative = bytes.get(at) == Some(&b'-');
        if negative {
            at += 1;
        }
        // The integer part's value, `None` past 64 bits.
        let mut magnitude = Some(0_u64);
        match bytes.get(at) {
            Some(b'0') => at += 1,
            Some(b'1'..=b'9') => {
                while let Some(&digit @ b'0'..=b'9') = bytes.get(at) {
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(digit - b'0')));
                    at += 1;
                }
            }
            _ => return None,
        }
        let mut integer = true;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            integer = false;
            if !digits(&mut at) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = bytes.get(at) {
            at += 1;
            integer = false;
            if let Some(b'+' | b'-') = bytes.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                return None;
            }
        }
        self.at = at;
        if integer {
            // One form per value, as the full path reads it: non-negative integers unsigned,
            // `-0` the integer 0. Past 64 bits the full path reads a float: not sure.
            let magnitude = magnitude?;
            if negative && magnitude != 0 {
                0_i64.checked_sub_unsigned(magnitude).map(Num::Signed)
            } else {
                Some(Num::Unsigned(magnitude))
            }
        } else {
            let value: f64 = self.text[start..at].parse().ok()?;
            value.is_finite().then_some(Num::Float(value))
        }
    }

    /// After a container's member: `Some(true)` at a comma (another member follows),
    /// `Some(false)` at `close` (the container ends), `None` at anything else.
    fn after_member(&mut self, close: u8) -> Option<bool> {
        self.skip_space();
        let next = self.peek()?;
        self.at += 1;
        match next {
            b',' => Some(true),
            _ if next == close => Some(false),
            _ => None,
        }
    }

    fn array(&mut self, check: Option<&Check>, depth: usize) -> bool {
        if depth >= MAX_DEPTH || check.is_some_and(|c| !container_allowed(c, Types::ARRAY)) {
            return false;
        }
        let (items, min, max) = check.map_or((&Rule::Any, 0, usize::MAX), |c| {
            (&c.array.items, c.array.min_items, c.array.max_items)
        });
        self.at += 1;
        let mut count = 0;
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                self.skip_space();
                count += 1;
                if count > max || !self.value(items, depth + 1) {
                    return false;
                }
                match self.after_member(b']') {
                    Some(true) => {}
                    Some(false) => break,
                    None => return false,
                }
            }
        }
        count >= min
    }

    fn object(&mut self, check: Option<&Check>, depth: usize) -> bool {
        if depth >= MAX_DEPTH || check.is_some_and(|c| !container_allowed(c, Types::OBJECT)) {
            return false;
        }
        let rules: Option<&ObjectCheck> = check.map(|c| &c.object);
        self.at += 1;
        let mut seen = 0_u64;
        let first_name = self.names.len();
        let mut count = 0;
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                self.skip_space();
                if self.peek() != Some(b'"') {
                    return false;
                }
                // A name the schema knows, written plainly, is matched against the bytes;
                // any other is scanned as a string.
                let written = rules.and_then(|r| {
                    r.written
                        .find(&self.text.as_bytes()[self.at + 1..])
                        .map(|(at, len)| (r, at, len))
                });
                let mut other = "";
                let known = if let Some((rules, at, len)) = written {
                    self.at += len + 2;
                    Some((rules, at))
                } else {
                    // A name with escapes may equal another once decoded: left to the full
                    // path. Without escapes its text is the name, and not one the schema
                    // knows: those were all looked for as written.
                    let Some(Text {
                        raw: name,
                        escaped: false,
                    }) = self.string()
                    else {
                        return false;
                    };
                    other = name;
                    None
                };
                if !self.expect(b':') {
                    return false;
                }
                self.skip_space();
                count += 1;
                let rule = if let Some((rules, at)) = known {
                    let bit = 1 << at;
                    if seen & bit != 0 {
                        return false;
                    }
                    seen |= bit;
                    rules.rule(at)
                } else {
                    let others = &self.names[first_name..];
                    if others.len() == FEW_NAMES || others.contains(&other) {
                        return false;
                    }
                    self.names.push(other);
                    rules.map_or(&Rule::Any, |r| &r.additional)
                };
                if !self.value(rule, depth + 1) {
                    return false;
                }
                match self.after_member(b'}') {
                    Some(true) => {}
                    Some(false) => break,
                    None => return false,
                }
            }
        }
        self.names.truncate(first_name);
        rules.is_none_or(|r| {
            seen & r.required == r.required && (r.min_members..=r.max_members).contains(&count)
        })
    }
}

/// A container's own type, and the value keywords that would judge it.
fn container_allowed(check: &Check, kind: u8) -> bool {
    check.types.allows(kind) && !check.value_judges_containers
}

/// A value that is not a container: its type, then the keywords that judge it alone.
fn scalar_holds(check: Option<&Check>, kind: u8, scalar: Scalar<'_>) -> bool {
    check.is_none_or(|check| {
        check.types.allows(kind)
            && check
                .value
                .as_ref()
                .is_none_or(|validator| scalar_is_valid(validator, scalar))
    })
}

fn string_holds(check: &Check, text: &Text<'_>) -> bool {
    let reads_text = check.min_length.is_some()
        || check.max_length.is_some()
        || check.pattern.is_some()
        || check.value.is_some();
    if text.escaped && reads_text {
        return false;
    }
    if check
        .pattern
        .as_ref()
        .is_some_and(|pattern| !pattern.matches(text.raw))
    {
        return false;
    }
    let (min, max) = (
        check.min_length.unwrap_or(0),
        check.max_length.unwrap_or(usize::MAX),
    );
    // A UTF-8 text of n bytes has between n/4 and n characters: counting them is needed only
    // when that range is not inside the bounds.
    let bytes = text.raw.len();
    let length_holds = (bytes.div_ceil(4) >= min && bytes <= max) || {
        let length = text.raw.chars().count();
        (min..=max).contains(&length)
    };
    length_holds && scalar_holds(Some(check), Types::STRING, Scalar::String(text.raw))
}

fn number_holds(check: &Check, value: Num) -> bool {
    let is_float = matches!(value, Num::Float(_));
    let type_holds = if is_float {
        // A float with no fraction is an integer to JSON Schema; left to the full path.
        check.types.allows(Types::NUMBER)
    } else {
        check.types.allows_integer()
    };
    type_holds
        && (!is_float || check.value.is_none())
        && check.bounds.hold(value)
        && scalar_holds(
            Some(check),
            Types::NUMBER | Types::INTEGER,
            Scalar::Number(value),
        )
}

#[cfg(test)]
mod tests {
    use super::{plain_run_end, STOPS_A_STRING};

    fn byte_by_byte(bytes: &[u8], from: usize) -> usize {
        (from..bytes.len())
            .find(|&at| STOPS_A_STRING[usize::from(bytes[at])])
            .unwrap_or(bytes.len())
    }

    #[test]
    fn the_word_at_a_time_skip_stops_where_the_byte_loop_does() {
        // Every byte value at every place of a word and past it, among plain ASCII or among
        // bytes past ASCII (which must never look like a stop), from every start.
        for filler in [b'a', 0xe0, 0x7f, 0xa2, 0xdc, 0x21] {
            for value in 0..=255_u8 {
                for place in 0..20 {
                    let mut bytes = vec![filler; 20];
                    bytes[place] = value;
                    for from in 0..bytes.len() {
                        assert_eq!(
                            plain_run_end(&bytes, from),
                            byte_by_byte(&bytes, from),
                            "{value:#x} at {place} among {filler:#x}, from {from}"
                        );
                    }
                }
            }
        }
        // Two stops in one word: the first counts.
        let bytes = b"ab\x01cd\"efghijkl";
        assert_eq!(plain_run_end(bytes, 0), 2);
    }
}
