//! Request path normalisation, done once before routing so that every policy sees the path the
//! upstream will get, and `/api/v1/../admin`, `//admin`, `/%61dmin` or `/admin/.` cannot slip
//! past a route.
//!
//! Steps (RFC 3986 sections 2.3, 6.2.2 and 5.2.4): percent-encoded unreserved characters are
//! decoded and other escapes upper-cased; encoded slashes, backslashes and NULs, raw
//! backslashes and control characters are refused (their meaning differs between servers);
//! repeated slashes collapse; `.` and `..` segments are removed, `..` never climbing above the
//! root. The trailing slash is kept.

use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path (must start with `/`).
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` (or `%5C`): an encoded separator.
    EncodedSeparator,
    /// `%00` or a raw NUL.
    Nul,
    /// A raw backslash or control character.
    ForbiddenCharacter,
    /// A `.` or `..` segment with parameters (`/..;/`): some servers resolve it as a dot
    /// segment after routing saw it as a name.
    DotSegmentParameters,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with /",
            PathError::BadEscape => "malformed percent-encoding",
            PathError::EncodedSeparator => "encoded slash or backslash",
            PathError::Nul => "NUL in the path",
            PathError::ForbiddenCharacter => "backslash or control character in the path",
            PathError::DotSegmentParameters => "dot segment with parameters (;)",
        })
    }
}

impl std::error::Error for PathError {}

/// The normalised form of `path` (the part of the request target before `?`).
pub fn normalize(path: &str) -> Result<String, PathError> {
    if is_normal(path) {
        // Most paths are: one copy instead of decoding, splitting and joining.
        return Ok(path.to_owned());
    }
    rewrite(path)
}

/// Whether `path` is already in normal form: absolute, nothing to decode or refuse, no empty
/// segment but a trailing one, no `.` or `..` segment (with or without `;` parameters).
/// [`rewrite`] returns such a path unchanged (the path fuzz target checks that on every input).
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path
        .bytes()
        .any(|b| b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f)
    {
        return false;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let stem = segment.split(';').next().unwrap_or(segment);
        if (segment.is_empty() && segments.peek().is_some()) || stem == "." || stem == ".." {
            return false;
        }
    }
    true
}

/// The normalised form of `path`, worked out in full (what [`normalize`] does for paths not
/// already normal); public so that fuzzing can hold the two to the same answers.
pub fn rewrite(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "" | "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            other if matches!(other.split(';').next(), Some("." | "..")) => {
                return Err(PathError::DotSegmentParameters);
            }
            other => {
                segments.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Decodes `%XX` of unreserved characters, upper-cases the other escapes, and refuses the
/// escapes and characters that must not reach routing.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let value = hi << 4 | lo;
                match value {
                    0 => return Err(PathError::Nul),
                    b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                    v if is_unreserved(v) => out.push(char::from(v)),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('%');
                        out.push(char::from(HEX[usize::from(v >> 4)]));
                        out.push(char::from(HEX[usize::from(v & 0x0f)]));
                    }
                }
                i += 3;
            }
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::ForbiddenCharacter),
            c if c < 0x20 || c == 0x7f => return Err(PathError::ForbiddenCharacter),
            _ => {
                // Multi-byte UTF-8 is copied whole; the input is a &str, so it is valid.
                let ch = path[i..].chars().next().expect("inside the string");
                out.push(ch);
                i += ch.len_utf8();
            }
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(path: &str) -> Result<String, PathError> {
        normalize(path)
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for path in ["/", "/api", "/api/", "/api/v1/users/42", "/a-b_c~d.e"] {
            assert_eq!(n(path).as_deref(), Ok(path));
        }
    }

    #[test]
    fn the_shortcut_takes_only_paths_the_full_rewrite_leaves_unchanged() {
        let normal = [
            "/",
            "/api",
            "/api/",
            "/api/v1/users/42",
            "/a;b",
            "/;x",
            "/a/..b",
            "/é",
        ];
        let not_normal = [
            "", "api", "//", "/a//b", "/.", "/..", "/a/./b", "/a/../b", "/.;x", "/..;x/a", "/%61",
            "/a\\b", "/a\u{7f}", "/a\tb",
        ];
        for path in normal {
            assert!(is_normal(path), "{path:?}");
            assert_eq!(rewrite(path).as_deref(), Ok(path), "{path:?}");
        }
        for path in not_normal {
            assert!(!is_normal(path), "{path:?}");
            assert_eq!(normalize(path), rewrite(path), "{path:?}");
        }
    }

    #[test]
    fn bypass_attempts_normalise_to_the_real_target() {
        let cases = [
            ("/api/v1/../admin", "/api/admin"),
            ("/api/v1/../../admin", "/admin"),
            ("//admin", "/admin"),
            ("///admin//x", "/admin/x"),
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("/admin/.", "/admin/"),
            ("/./admin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/.%2E/admin", "/admin"),
            ("/api/%2E./admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/api/v1/users/..", "/api/v1/"),
            ("/api/v1/users/../", "/api/v1/"),
            ("/api/v1/x/%2e", "/api/v1/x/"),
            ("/%7euser", "/~user"),
        ];
        for (input, expected) in cases {
            assert_eq!(n(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn dangerous_escapes_and_characters_are_refused() {
        let cases = [
            ("/admin%2fx", PathError::EncodedSeparator),
            ("/admin%2Fx", PathError::EncodedSeparator),
            ("/api/..%2fadmin", PathError::EncodedSeparator),
            ("/admin%5cx", PathError::EncodedSeparator),
            ("/admin\\x", PathError::ForbiddenCharacter),
            ("/admin%00", PathError::Nul),
            ("/admin\0", PathError::Nul),
            ("/admin\r\n", PathError::ForbiddenCharacter),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/api/..;/admin", PathError::DotSegmentParameters),
            ("/api/.;x/admin", PathError::DotSegmentParameters),
            ("/api/%2e%2e;/admin", PathError::DotSegmentParameters),
            ("admin", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
        ];
        for (input, expected) in cases {
            assert_eq!(n(input), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn other_escapes_are_kept_in_canonical_case() {
        assert_eq!(n("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(n("/a%c3%a9").as_deref(), Ok("/a%C3%A9"));
        assert_eq!(n("/é").as_deref(), Ok("/é"));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for input in [
            "/api/v1/../admin",
            "//x//y/./z/..",
            "/%61/%2e%2e/b/",
            "/a%20b",
        ] {
            let once = n(input).unwrap();
            assert_eq!(n(&once).unwrap(), once, "{input}");
        }
    }
}
