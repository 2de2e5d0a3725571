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

use std::{borrow::Cow, collections::HashSet, fmt};

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

const DUPLICATE: &str = "duplicate member name";

impl<'a> Tape<'a> {
    /// Parses `body` (one JSON text, surrounding whitespace allowed).
    pub fn parse(body: &'a [u8]) -> Result<Tape<'a>, TapeError> {
        // A value takes at least two bytes of a document, but most take far more.
        let mut entries = Vec::with_capacity((body.len() / 8).clamp(4, 64 * 1024));
        let mut reader = serde_json::Deserializer::from_slice(body);
        let parsed = Builder {
            entries: &mut entries,
        }
        .deserialize(&mut reader)
        .and_then(|()| reader.end());
        match parsed {
            Ok(()) => Ok(Tape { entries }),
            Err(error) if error.to_string().starts_with(DUPLICATE) => Err(TapeError::DuplicateName),
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let at = self.entries.len();
        self.entries.push(Entry::Array { len: 0, end: 0 });
        let mut len = 0u32;
        while seq
            .next_element_seed(Builder {
                entries: &mut *self.entries,
            })?
            .is_some()
        {
            len += 1;
        }
        let end = index(self.entries.len())?;
        self.entries[at] = Entry::Array { len, end };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let at = self.entries.len();
        self.entries.push(Entry::Object { len: 0, end: 0 });
        let mut len = 0u32;
        // Small objects are checked for repeated names by a scan; larger ones by a set.
        let mut names: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            if len >= 16 {
                let set = names.get_or_insert_with(|| member_names(self.entries, at).collect());
                if !set.insert(name.clone()) {
                    return Err(de::Error::custom(DUPLICATE));
                }
            } else if member_names(self.entries, at).any(|seen| seen == name) {
                return Err(de::Error::custom(DUPLICATE));
            }
            self.entries.push(Entry::Key(name));
            map.next_value_seed(Builder {
                entries: &mut *self.entries,
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn meets_the_representation_contract() {
        let text = serde_json::to_vec(&jsonschema::json::conformance::document()).unwrap();
        let tape = Tape::parse(&text).unwrap();
        jsonschema::json::conformance::assert_conformance::<TapeJson>(&tape.root());
    }

    #[test]
    fn round_trips_to_the_same_value() {
        let text = br#"{"a": [1, -2, 3.5, 18446744073709551615, 1e300, -0.0, "x\u00e9\n"], "b": {"c": null, "d": true}, "": []}"#;
        let tape = Tape::parse(text).unwrap();
        let value: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(tape.root().to_value().into_owned(), value);
    }

    #[test]
    fn repeated_names_and_malformed_text_are_refused() {
        assert!(matches!(
            Tape::parse(br#"{"a": 1, "b": 2, "a": 3}"#),
            Err(TapeError::DuplicateName)
        ));
        let many = (0..40)
            .map(|i| format!("\"k{i}\": {i}"))
            .collect::<Vec<_>>()
            .join(",");
        let repeated = format!("{{{many}, \"k3\": 0}}");
        assert!(matches!(
            Tape::parse(repeated.as_bytes()),
            Err(TapeError::DuplicateName)
        ));
        // Escapes are compared decoded: "\u0061" is "a".
        assert!(matches!(
            Tape::parse(br#"{"a": 1, "\u0061": 2}"#),
            Err(TapeError::DuplicateName)
        ));
        for bad in [&b"{"[..], b"[1,]", b"{\"a\" 1}", b"1 2", b"", b"nul"] {
            assert!(
                matches!(Tape::parse(bad), Err(TapeError::Malformed)),
                "{bad:?}"
            );
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(
            Tape::parse(deep.as_bytes()),
            Err(TapeError::Malformed)
        ));
        assert!(Tape::parse(json!({"a": {"a": {"a": 1}}}).to_string().as_bytes()).is_ok());
    }

    /// A small deterministic generator (xorshift), so a failure names its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn pick<'p, T>(&mut self, pool: &'p [T]) -> &'p T {
            &pool[self.below(pool.len() as u64) as usize]
        }
    }

    const NAMES: &[&str] = &[
        "customer", "note", "items", "sku", "quantity", "a", "b", "kind", "tags", "x-extra",
        "n\u{e9}", "",
    ];

    fn random_value(rng: &mut Rng, depth: u32) -> Value {
        let leaf = depth >= 4 || rng.below(3) == 0;
        match if leaf { rng.below(6) } else { rng.below(8) } {
            0 => Value::Null,
            1 => Value::Bool(rng.below(2) == 0),
            2 => rng
                .pick(&[
                    json!(0),
                    json!(1),
                    json!(-1),
                    json!(1000),
                    json!(1001),
                    json!(1.0),
                    json!(1.5),
                    json!(2.5e10),
                    json!(u64::MAX),
                    json!(i64::MIN),
                    json!(-0.0),
                    json!(3),
                    json!(9_007_199_254_740_993_u64),
                ])
                .clone(),
            3..=5 => Value::String(
                rng.pick(&[
                    "",
                    "SKU-0001",
                    "sku-1",
                    "ABCD",
                    "ABC",
                    "A-B-C-D-E-F-G-H-I-J",
                    "acme",
                    "\u{e9}\u{e9}",
                    "x\ny",
                    "red",
                    "green",
                    "2026-11-29",
                    "not a date",
                    "a@example.com",
                ])
                .to_string(),
            ),
            6 => Value::Array(
                (0..rng.below(5))
                    .map(|_| random_value(rng, depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..rng.below(5))
                    .map(|_| (rng.pick(NAMES).to_string(), random_value(rng, depth + 1)))
                    .collect(),
            ),
        }
    }

    /// Schemas covering the keywords (and their interplay) a route may use.
    fn schemas() -> Vec<Value> {
        let order: Value =
            serde_json::from_str(include_str!("../../../config/examples/order.schema.json"))
                .unwrap();
        vec![
            order,
            json!({
                "type": "object",
                "properties": {
                    "a": {"enum": [1, "red", null, [1, 2]]},
                    "b": {"const": {"a": 1}},
                    "tags": {"type": "array", "uniqueItems": true, "contains": {"type": "string"}, "minContains": 1},
                    "kind": {"type": ["string", "integer"], "minLength": 3, "multipleOf": 3}
                },
                "patternProperties": {"^x-": {"type": "string"}},
                "propertyNames": {"maxLength": 8},
                "minProperties": 1,
                "maxProperties": 4,
                "dependentRequired": {"a": ["b"]},
                "unevaluatedProperties": false
            }),
            json!({
                "$defs": {"item": {"type": "object", "required": ["sku"], "properties": {"sku": {"$ref": "#/$defs/sku"}}}, "sku": {"type": "string", "pattern": "^[A-Z]+"}},
                "oneOf": [
                    {"type": "array", "prefixItems": [{"type": "integer"}, {"$ref": "#/$defs/item"}], "items": false},
                    {"type": "object", "if": {"required": ["a"]}, "then": {"properties": {"a": {"type": "number", "exclusiveMinimum": 1, "maximum": 1000}}}, "else": {"not": {"required": ["b"]}}},
                    {"anyOf": [{"type": "null"}, {"type": "boolean"}, {"type": "integer", "minimum": -1}]}
                ]
            }),
            json!({"type": "object", "additionalProperties": {"type": "array", "maxItems": 2, "items": {"type": ["number", "null"]}}}),
            json!(true),
            json!(false),
        ]
    }

    #[test]
    fn validates_exactly_like_a_value_on_random_documents() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let mut verdicts = [0usize; 2];
        for schema in schemas() {
            let values = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&schema)
                .unwrap();
            let tapes = jsonschema::options_for::<TapeJson>()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&schema)
                .unwrap();
            for round in 0..4_000 {
                let value = random_value(&mut rng, 0);
                let text = serde_json::to_vec(&value).unwrap();
                let tape = Tape::parse(&text).unwrap();
                let expected = values.is_valid(&value);
                assert_eq!(
                    tapes.is_valid(tape.root()),
                    expected,
                    "schema {schema}, round {round}: {value}"
                );
                let pointers = |errors: Vec<String>| errors;
                let by_value = pointers(
                    values
                        .iter_errors(&value)
                        .map(|e| format!("{} {}", e.instance_path().as_str(), e.kind().keyword()))
                        .collect(),
                );
                let by_tape = pointers(
                    tapes
                        .iter_errors(tape.root())
                        .map(|e| format!("{} {}", e.instance_path().as_str(), e.kind().keyword()))
                        .collect(),
                );
                assert_eq!(by_tape, by_value, "schema {schema}, round {round}: {value}");
                verdicts[usize::from(expected)] += 1;
            }
        }
        // The generator reaches both verdicts often enough to mean something.
        assert!(verdicts[0] > 1_000 && verdicts[1] > 1_000, "{verdicts:?}");
    }
}
