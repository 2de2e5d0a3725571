//! Request bodies as a flat tape for the JSON Schema validator. Building a `serde_json::Value`
//! for a 1 KiB body costs about 130 allocations (a `String` per key and string, a B-tree per
//! object), which was most of the cost of validating it. Here `serde_json` still does all the
//! parsing, but every value lands in one `Vec`, strings without escapes stay borrowed from the
//! body, and `jsonschema` validates the tape through its public representation traits
//! ([`jsonschema::json::Json`]), with the same keywords and semantics as for a `Value`. No crate
//! offers such a representation, hence this module.
//!
//! One difference from `Value`, on purpose: an object that repeats a member name is refused
//! while parsing. A `Value` keeps the last one silently, and an upstream parser that keeps the
//! first would then read a value the schema never saw.

use std::{borrow::Cow, cell::Cell, collections::HashSet, fmt};

use jsonschema::{
    json::{Array, Json, JsonNumber, Node, NodeIdentity, Object},
    JsonType,
};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The representation, for `jsonschema::options_for::<TapeJson>()`.
#[derive(Debug)]
pub struct TapeJson;

/// A parsed document: values in document order, each container followed by its contents.
#[derive(Debug)]
pub struct Tape<'a> {
    entries: Vec<Entry<'a>>,
}

#[derive(Debug, Clone)]
enum Entry<'a> {
    Null,
    Bool(bool),
    Number(Num),
    String(Cow<'a, str>),
    /// A member name; its value follows.
    Key(Cow<'a, str>),
    /// `len` elements follow, up to index `end`.
    Array {
        len: u32,
        end: u32,
    },
    /// `len` (name, value) members follow, up to index `end`.
    Object {
        len: u32,
        end: u32,
    },
}

/// A number as `serde_json` reads it (no arbitrary precision).
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

impl<'a> Tape<'a> {
    /// Parses `body` (one JSON text, surrounding whitespace allowed).
    pub fn parse(body: &'a [u8]) -> Result<Tape<'a>, TapeError> {
        // A value takes at least two bytes of a document, but most take far more.
        let mut entries = Vec::with_capacity((body.len() / 8).clamp(4, 64 * 1024));
        let mut reader = serde_json::Deserializer::from_slice(body);
        let repeated = Cell::new(false);
        let parsed = Builder {
            entries: &mut entries,
            repeated: &repeated,
        }
        .deserialize(&mut reader)
        .and_then(|()| reader.end());
        match parsed {
            Ok(()) => Ok(Tape { entries }),
            Err(_) if repeated.get() => Err(TapeError::DuplicateName),
            Err(_) => Err(TapeError::Malformed),
        }
    }

    /// The root value.
    pub fn root(&self) -> TapeNode<'_> {
        TapeNode {
            entries: &self.entries,
            at: 0,
        }
    }
}

struct Builder<'t, 'a> {
    entries: &'t mut Vec<Entry<'a>>,
    /// Set when parsing stops at a repeated member name.
    repeated: &'t Cell<bool>,
}

impl<'a> Builder<'_, 'a> {
    /// The builder of a nested value.
    fn child(&mut self) -> Builder<'_, 'a> {
        Builder {
            entries: &mut *self.entries,
            repeated: self.repeated,
        }
    }

    fn repeated<E: de::Error>(&self) -> E {
        self.repeated.set(true);
        E::custom("duplicate member name")
    }
}

impl<'de> DeserializeSeed<'de> for Builder<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn index<E: de::Error>(n: usize) -> Result<u32, E> {
    u32::try_from(n).map_err(|_| E::custom("document too large"))
}

impl<'de> Visitor<'de> for Builder<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.entries.push(Entry::Null);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.entries.push(Entry::Bool(v));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.entries.push(Entry::Number(Num::Unsigned(v)));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        // serde_json reads non-negative integers as u64; keep one form per value.
        self.entries.push(Entry::Number(match u64::try_from(v) {
            Ok(u) => Num::Unsigned(u),
            Err(_) => Num::Signed(v),
        }));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.entries.push(Entry::Number(Num::Float(v)));
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.entries.push(Entry::String(Cow::Borrowed(v)));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.entries.push(Entry::String(Cow::Owned(v.to_owned())));
        Ok(())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.entries.push(Entry::String(Cow::Owned(v)));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let at = self.entries.len();
        self.entries.push(Entry::Array { len: 0, end: 0 });
        let mut len = 0u32;
        while seq.next_element_seed(self.child())?.is_some() {
            len += 1;
        }
        let end = index(self.entries.len())?;
        self.entries[at] = Entry::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let at = self.entries.len();
        self.entries.push(Entry::Object { len: 0, end: 0 });
        let mut len = 0u32;
        // Small objects are checked for repeated names by a scan; larger ones by a set.
        let mut names: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            if len >= 16 {
                let set = names.get_or_insert_with(|| member_names(self.entries, at).collect());
                if !set.insert(name.clone()) {
                    return Err(self.repeated());
                }
            } else if member_names(self.entries, at).any(|seen| seen == name) {
                return Err(self.repeated());
            }
            self.entries.push(Entry::Key(name));
            map.next_value_seed(self.child())?;
            len += 1;
        }
        let end = index(self.entries.len())?;
        self.entries[at] = Entry::Object { len, end };
        Ok(())
    }
}

/// The names of the members pushed so far for the object at `at`.
fn member_names<'e, 'a>(
    entries: &'e [Entry<'a>],
    at: usize,
) -> impl Iterator<Item = Cow<'a, str>> + 'e {
    let mut next = at + 1;
    std::iter::from_fn(move || {
        let Entry::Key(name) = entries.get(next)? else {
            return None;
        };
        next = after(entries, next + 1);
        Some(name.clone())
    })
}

/// The index after the value at `at`.
fn after(entries: &[Entry<'_>], at: usize) -> usize {
    match entries.get(at) {
        Some(Entry::Array { end, .. } | Entry::Object { end, .. }) => *end as usize,
        _ => at + 1,
    }
}

/// Member names, borrowed from the body when they have no escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
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
        let entries = [Entry::String(Cow::Borrowed(string))];
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
    fn entry(&self) -> &'a Entry<'a> {
        &self.entries[self.at]
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
            Entry::Object { len, .. } => Some(self.container(*len)),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<TapeContainer<'a>> {
        match self.entry() {
            Entry::Array { len, .. } => Some(self.container(*len)),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self.entry() {
            Entry::String(s) => Some(Cow::Borrowed(s.as_ref())),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<Num> {
        match self.entry() {
            Entry::Number(n) => Some(*n),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.entry() {
            Entry::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.entry(), Entry::Null)
    }

    fn json_type(&self) -> JsonType {
        match self.entry() {
            Entry::Null => JsonType::Null,
            Entry::Bool(_) => JsonType::Boolean,
            Entry::Number(_) => JsonType::Number,
            Entry::String(_) | Entry::Key(_) => JsonType::String,
            Entry::Array { .. } => JsonType::Array,
            Entry::Object { .. } => JsonType::Object,
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self.entry() {
            Entry::Null => Value::Null,
            Entry::Bool(b) => Value::Bool(*b),
            Entry::Number(n) => Value::Number(n.to_number().into_owned()),
            Entry::String(s) | Entry::Key(s) => Value::String(s.to_string()),
            Entry::Array { len, .. } => Value::Array(
                self.container(*len)
                    .elements()
                    .map(|element| element.to_value().into_owned())
                    .collect(),
            ),
            Entry::Object { len, .. } => Value::Object(
                self.container(*len)
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
    fn container(&self, len: u32) -> TapeContainer<'a> {
        TapeContainer {
            entries: self.entries,
            first: self.at + 1,
            len: len as usize,
        }
    }
}

/// An array's elements or an object's members.
#[derive(Debug, Clone, Copy)]
pub struct TapeContainer<'a> {
    entries: &'a [Entry<'a>],
    first: usize,
    len: usize,
}

/// Walks a container's values (arrays) or (name, value) pairs (objects).
pub struct TapeIter<'a> {
    entries: &'a [Entry<'a>],
    next: usize,
    left: usize,
}

impl<'a> Iterator for TapeIter<'a> {
    type Item = (Option<&'a str>, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name = match &self.entries[self.next] {
            Entry::Key(name) => {
                self.next += 1;
                Some(name.as_ref())
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
