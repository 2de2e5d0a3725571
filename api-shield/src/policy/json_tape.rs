//! Request bodies as a flat tape for the JSON Schema validator. Building a `serde_json::Value`
//! for a 1 KiB body costs about 130 allocations (a `String` per key and string, a B-tree per
//! object), which was most of the cost of validating it. Here `simd-json` parses the body in
//! place into its tape (one `Vec` of nodes, strings unescaped inside the body's own bytes), and
//! `jsonschema` validates that tape through its public representation traits
//! ([`jsonschema::json::Json`]), with the same keywords and semantics as for a `Value`. No crate
//! offers that representation, hence this module.
//!
//! What `serde_json` refused stays refused, on purpose:
//! - an object that repeats a member name. A `Value` keeps the last one silently, and an
//!   upstream parser that keeps the first would then read a value the schema never saw;
//! - nesting deeper than 127 containers (`serde_json`'s limit), so the validator's recursion
//!   stays bounded.

use std::{borrow::Cow, cell::RefCell, collections::HashSet};

use jsonschema::{
    json::{Array, Json, JsonNumber, Node, NodeIdentity, Object},
    JsonType,
};
use serde_json::{Map, Number, Value};
use simd_json::{Node as Entry, StaticNode};

/// Containers nested deeper than this are refused, as `serde_json` refuses them (its recursion
/// limit of 128 allows 127 levels).
const MAX_DEPTH: usize = 127;

/// Objects with more members than this are checked for repeated names with a set, smaller ones
/// by a scan.
const SCAN_NAMES_UP_TO: usize = 16;

/// The representation, for `jsonschema::options_for::<TapeJson>()`.
#[derive(Debug)]
pub struct TapeJson;

/// A parsed document: values in document order, each container followed by its contents, an
/// object's as alternating names and values.
#[derive(Debug)]
pub struct Tape<'a> {
    entries: Vec<Entry<'a>>,
}

/// A number as JSON Schema reads it.
#[derive(Debug, Clone, Copy)]
pub enum Num {
    /// A non-negative integer.
    Unsigned(u64),
    /// A negative integer.
    Signed(i64),
    /// Anything else.
    Float(f64),
}

/// Why a body is not a document.
#[derive(Debug, thiserror::Error)]
pub enum TapeError {
    /// Not well-formed JSON (or nested too deep).
    #[error("not well-formed JSON")]
    Malformed,
    /// An object repeats a member name.
    #[error("an object repeats a member name")]
    DuplicateName,
}

/// The parser's scratch space is sized for bodies up to this many bytes; a larger body gets
/// scratch space of its own, freed after it, so no thread keeps a multiple of the largest body
/// it ever saw.
const SCRATCH_FOR: usize = 64 * 1024;

thread_local! {
    /// The parser's scratch space, kept per thread so a request does not allocate it anew.
    static BUFFERS: RefCell<simd_json::Buffers> =
        RefCell::new(simd_json::Buffers::new(SCRATCH_FOR));
}

impl<'a> Tape<'a> {
    /// Parses `text` (one JSON text, surrounding whitespace allowed). Strings with escapes are
    /// decoded in place, so `text` is left scrambled.
    pub fn parse(text: &'a mut [u8]) -> Result<Tape<'a>, TapeError> {
        let parsed = if text.len() <= SCRATCH_FOR {
            BUFFERS.with(|buffers| simd_json::to_tape_with_buffers(text, &mut buffers.borrow_mut()))
        } else {
            simd_json::to_tape(text)
        };
        let entries = parsed.map_err(|_| TapeError::Malformed)?.0;
        if entries.is_empty() {
            return Err(TapeError::Malformed);
        }
        check_structure(&entries)?;
        Ok(Tape { entries })
    }

    /// The root value.
    pub fn root(&self) -> TapeNode<'_> {
        TapeNode {
            entries: &self.entries,
            at: 0,
        }
    }
}

/// A value that is not a container, for checking it alone ([`scalar_is_valid`]).
#[derive(Debug, Clone, Copy)]
pub enum Scalar<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Num),
    /// A string, unescaped.
    String(&'a str),
}

/// Whether `validator` accepts `scalar` as a whole document: a tape of one entry.
pub fn scalar_is_valid(validator: &jsonschema::Validator<TapeJson>, scalar: Scalar<'_>) -> bool {
    let entry = match scalar {
        Scalar::Null => Entry::Static(StaticNode::Null),
        Scalar::Bool(b) => Entry::Static(StaticNode::Bool(b)),
        Scalar::Number(Num::Unsigned(u)) => Entry::Static(StaticNode::U64(u)),
        Scalar::Number(Num::Signed(i)) => Entry::Static(StaticNode::I64(i)),
        Scalar::Number(Num::Float(f)) => Entry::Static(StaticNode::F64(f)),
        Scalar::String(s) => Entry::String(s),
    };
    let entries = [entry];
    validator.is_valid(TapeNode {
        entries: &entries,
        at: 0,
    })
}

/// Refuses repeated member names and nesting past [`MAX_DEPTH`] in the document.
fn check_structure(entries: &[Entry<'_>]) -> Result<(), TapeError> {
    let mut names = Vec::with_capacity(64);
    check_value(entries, 0, 0, &mut names)
}

/// [`check_structure`] for the value at `at`, nested `depth` containers deep. `names` holds the
/// member names of the enclosing objects; an object pushes its own and removes them after.
fn check_value<'a>(
    entries: &[Entry<'a>],
    at: usize,
    depth: usize,
    names: &mut Vec<&'a str>,
) -> Result<(), TapeError> {
    // The tape is simd-json's; an index it would get wrong is refused, never a panic.
    let (len, is_object) = match entries.get(at) {
        Some(Entry::Object { len, .. }) => (*len, true),
        Some(Entry::Array { len, .. }) => (*len, false),
        Some(Entry::String(_) | Entry::Static(_)) => return Ok(()),
        None => return Err(TapeError::Malformed),
    };
    if depth >= MAX_DEPTH {
        return Err(TapeError::Malformed);
    }
    let first_name = names.len();
    let mut set: Option<HashSet<&str>> = None;
    let mut next = at + 1;
    for _ in 0..len {
        if is_object {
            let Some(&Entry::String(name)) = entries.get(next) else {
                return Err(TapeError::Malformed);
            };
            let repeated = if len > SCAN_NAMES_UP_TO {
                !set.get_or_insert_with(|| HashSet::with_capacity(len))
                    .insert(name)
            } else {
                let seen = names[first_name..].contains(&name);
                names.push(name);
                seen
            };
            if repeated {
                return Err(TapeError::DuplicateName);
            }
            next += 1;
        }
        match entries.get(next) {
            Some(Entry::Object { .. } | Entry::Array { .. }) => {
                check_value(entries, next, depth + 1, names)?;
            }
            Some(_) => {}
            None => return Err(TapeError::Malformed),
        }
        next = after(entries, next);
    }
    names.truncate(first_name);
    Ok(())
}

/// The index after the value at `at`.
fn after(entries: &[Entry<'_>], at: usize) -> usize {
    match entries.get(at) {
        Some(Entry::Array { count, .. } | Entry::Object { count, .. }) => at + 1 + count,
        _ => at + 1,
    }
}

impl Json for TapeJson {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();
    // Objects are scanned, not hashed: a pass over the members beats repeated lookups.
    const KEYS_PER_LOOKUP: usize = 8;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        let entries = [Entry::String(string)];
        f(TapeNode {
            entries: &entries,
            at: 0,
        })
    }
}

/// A value of a [`Tape`].
#[derive(Debug, Clone, Copy)]
pub struct TapeNode<'a> {
    entries: &'a [Entry<'a>],
    at: usize,
}

impl<'a> TapeNode<'a> {
    fn entry(&self) -> Entry<'a> {
        self.entries[self.at]
    }
}

impl Num {
    fn of(node: StaticNode) -> Option<Num> {
        match node {
            StaticNode::U64(u) => Some(Num::Unsigned(u)),
            // One form per value: non-negative integers are unsigned, as serde_json reads them.
            StaticNode::I64(i) => Some(match u64::try_from(i) {
                Ok(u) => Num::Unsigned(u),
                Err(_) => Num::Signed(i),
            }),
            StaticNode::F64(f) => Some(Num::Float(f)),
            StaticNode::Bool(_) | StaticNode::Null => None,
        }
    }
}

impl JsonNumber for Num {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Num::Unsigned(u) => Some(u),
            Num::Signed(_) | Num::Float(_) => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            Num::Unsigned(u) => i64::try_from(u).ok(),
            Num::Signed(i) => Some(i),
            Num::Float(_) => None,
        }
    }

    #[allow(clippy::cast_precision_loss)] // As serde_json's `Number::as_f64`.
    fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            Num::Unsigned(u) => u as f64,
            Num::Signed(i) => i as f64,
            Num::Float(f) => f,
        })
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }

    fn to_number(&self) -> Cow<'_, Number> {
        Cow::Owned(match *self {
            Num::Unsigned(u) => Number::from(u),
            Num::Signed(i) => Number::from(i),
            // serde_json never yields a non-finite number.
            Num::Float(f) => Number::from_f64(f).unwrap_or_else(|| Number::from(0)),
        })
    }
}

impl<'a> Node<'a, TapeJson> for TapeNode<'a> {
    type Object = TapeContainer<'a>;
    type Array = TapeContainer<'a>;
    type Number = Num;

    fn as_object(&self) -> Option<TapeContainer<'a>> {
        match self.entry() {
            Entry::Object { len, .. } => Some(self.container(len)),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeContainer<'a>> {
        match self.entry() {
            Entry::Array { len, .. } => Some(self.container(len)),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Entry::String(s) => Some(Cow::Borrowed(s)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<Num> {
        match self.entry() {
            Entry::Static(node) => Num::of(node),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Entry::Static(StaticNode::Bool(b)) => Some(b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Entry::Static(StaticNode::Null))
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            Entry::Static(StaticNode::Null) => JsonType::Null,
            Entry::Static(StaticNode::Bool(_)) => JsonType::Boolean,
            Entry::Static(_) => JsonType::Number,
            Entry::String(_) => JsonType::String,
            Entry::Array { .. } => JsonType::Array,
            Entry::Object { .. } => JsonType::Object,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self.entry() {
            Entry::Static(StaticNode::Null) => Value::Null,
            Entry::Static(StaticNode::Bool(b)) => Value::Bool(b),
            Entry::Static(node) => {
                Num::of(node).map_or(Value::Null, |n| Value::Number(n.to_number().into_owned()))
            }
            Entry::String(s) => Value::String(s.to_owned()),
            Entry::Array { len, .. } => Value::Array(
                self.container(len)
                    .elements()
                    .map(|element| element.to_value().into_owned())
                    .collect(),
            ),
            Entry::Object { len, .. } => Value::Object(
                self.container(len)
                    .members()
                    .map(|(name, value)| (name.to_owned(), value.to_value().into_owned()))
                    .collect::<Map<_, _>>(),
            ),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::tagged(
            self.entries.as_ptr() as usize,
            u32::try_from(self.at).unwrap_or(u32::MAX),
        ))
    }
}

impl<'a> TapeNode<'a> {
    fn container(&self, len: usize) -> TapeContainer<'a> {
        TapeContainer {
            entries: self.entries,
            first: self.at + 1,
            len,
            named: matches!(self.entry(), Entry::Object { .. }),
        }
    }
}

/// An array's elements or an object's members.
#[derive(Debug, Clone, Copy)]
pub struct TapeContainer<'a> {
    entries: &'a [Entry<'a>],
    first: usize,
    len: usize,
    /// An object's: each value follows its name.
    named: bool,
}

/// Walks a container's values (arrays) or (name, value) pairs (objects).
pub struct TapeIter<'a> {
    entries: &'a [Entry<'a>],
    next: usize,
    left: usize,
    named: bool,
}

impl<'a> Iterator for TapeIter<'a> {
    type Item = (Option<&'a str>, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = match self.entries[self.next] {
            Entry::String(name) if self.named => {
                self.next += 1;
                Some(name)
            }
            _ => None,
        };
        let node = TapeNode {
            entries: self.entries,
            at: self.next,
        };
        self.next = after(self.entries, self.next);
        Some((name, node))
    }
}

impl<'a> TapeContainer<'a> {
    fn walk(&self) -> TapeIter<'a> {
        TapeIter {
            entries: self.entries,
            next: self.first,
            left: self.len,
            named: self.named,
        }
    }
}

impl<'a> Object<'a, TapeJson> for TapeContainer<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = std::iter::Map<
        TapeIter<'a>,
        fn((Option<&'a str>, TapeNode<'a>)) -> (&'a str, TapeNode<'a>),
    >;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        self.walk()
            .find(|(name, _)| *name == Some(key.as_ref()))
            .map(|(_, node)| node)
    }

    fn members(&self) -> Self::MembersIter {
        self.walk()
            .map(|(name, node)| (name.unwrap_or_default(), node))
    }
}

impl<'a> Array<'a, TapeJson> for TapeContainer<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter =
        std::iter::Map<TapeIter<'a>, fn((Option<&'a str>, TapeNode<'a>)) -> TapeNode<'a>>;

    fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> Self::ElementsIter {
        self.walk().map(|(_, node)| node)
    }
}

#[cfg(test)]
pub(crate) mod tests;
