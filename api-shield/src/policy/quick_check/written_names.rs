//! The member names an object's schema knows, matched as they are written against the bytes
//! after a name's opening quote, so the scanner never scans a known name as a string first.
//! A name of up to 15 bytes is compared as two masked 64-bit words (its bytes and the closing
//! quote), which is what keeps this cheap: a per-name `memcmp` call cost more than the scan of
//! the name itself.

/// Bytes compared as words: a name of up to 15 bytes plus its closing quote.
const WORDS_BYTES: usize = 16;

/// One known name.
#[derive(Debug)]
struct WrittenName {
    /// Its index among the object's names.
    index: usize,
    /// The name and its closing quote.
    written: Box<[u8]>,
    /// The first and second 8 bytes of `written` (zero past its end), and masks of its bytes.
    words: [u64; 2],
    masks: [u64; 2],
}

/// The names an object's schema knows.
#[derive(Debug, Default)]
pub(super) struct WrittenNames {
    names: Vec<WrittenName>,
}

impl WrittenNames {
    /// The matchers of `names` (by index). A name that JSON text must escape (a quote, a
    /// backslash, a control character) is left out: its written form differs from it, and the
    /// scanner decodes such names itself.
    pub(super) fn new(names: &[Box<str>]) -> WrittenNames {
        let names = names
            .iter()
            .enumerate()
            .filter(|(_, name)| !name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20))
            .map(|(index, name)| {
                let mut written = name.as_bytes().to_vec();
                written.push(b'"');
                let mut padded = [0_u8; WORDS_BYTES];
                let mut mask = [0_u8; WORDS_BYTES];
                for (at, &byte) in written.iter().take(WORDS_BYTES).enumerate() {
                    padded[at] = byte;
                    mask[at] = 0xff;
                }
                WrittenName {
                    index,
                    written: written.into(),
                    words: [word(&padded, 0), word(&padded, 8)],
                    masks: [word(&mask, 0), word(&mask, 8)],
                }
            })
            .collect();
        WrittenNames { names }
    }

    /// The index and length of the known name that `text` (what follows a name's opening
    /// quote) starts with, closed by its quote.
    pub(super) fn find(&self, text: &[u8]) -> Option<(usize, usize)> {
        let words = text
            .get(..WORDS_BYTES)
            .map(|head| [word(head, 0), word(head, 8)]);
        self.names.iter().find_map(|name| {
            let found = match words {
                Some([first, second]) if name.written.len() <= WORDS_BYTES => {
                    first & name.masks[0] == name.words[0]
                        && second & name.masks[1] == name.words[1]
                }
                _ => text.starts_with(&name.written),
            };
            found.then_some((name.index, name.written.len() - 1))
        })
    }
}

/// The 8 bytes of `bytes` from `at`, as a little-endian word.
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut eight = [0_u8; 8];
    eight.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(eight)
}

#[cfg(test)]
mod tests {
    use super::WrittenNames;

    fn names(list: &[&str]) -> WrittenNames {
        let boxed: Vec<Box<str>> = list.iter().map(|&n| n.into()).collect();
        WrittenNames::new(&boxed)
    }

    #[test]
    fn a_name_is_found_only_when_its_quote_closes_it() {
        let known = names(&[
            "sku",
            "quantity",
            "exactly-16-bytes",
            "longer-than-sixteen-bytes",
        ]);
        // Short texts (the word path needs 16 bytes) and long ones, for every name.
        for tail in ["", ": 1, \"other\": 2}"] {
            let found = |text: &str| known.find(format!("{text}{tail}").as_bytes());
            assert_eq!(found("sku\""), Some((0, 3)));
            assert_eq!(found("quantity\""), Some((1, 8)));
            assert_eq!(found("exactly-16-bytes\""), Some((2, 16)));
            assert_eq!(found("exactly-16-byte\""), None);
            assert_eq!(found("longer-than-sixteen-bytes\""), Some((3, 25)));
            assert_eq!(found("skus\""), None);
            assert_eq!(found("sk\""), None);
            assert_eq!(found("Sku\""), None);
            assert_eq!(found("quantity"), None);
            assert_eq!(found("longer-than-sixteen-byte\""), None);
        }
        let fifteen = names(&["exactly-15-byte"]);
        assert_eq!(fifteen.find(b"exactly-15-byte\": 1}"), Some((0, 15)));
        assert_eq!(fifteen.find(b"exactly-15-bytes\": 1}"), None);
        assert_eq!(fifteen.find(b"exactly-15-byte"), None);
    }

    #[test]
    fn names_that_must_be_escaped_are_never_found_as_written() {
        let known = names(&["a\"b", "c\\d", "tab\there", "plain"]);
        assert_eq!(known.find(b"a\"b\": 1, \"padding\": 2"), None);
        assert_eq!(known.find(b"c\\d\": 1, \"padding\": 2"), None);
        assert_eq!(known.find(b"tab\there\": 1, \"padding\": 2"), None);
        assert_eq!(known.find(b"plain\": 1, \"padding\": 2"), Some((3, 5)));
    }
}
