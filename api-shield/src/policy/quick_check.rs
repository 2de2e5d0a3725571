//! A quick yes for request bodies that match their schema. Most bodies a route receives are
//! valid, and for them the full path (parsing into a tape, then `jsonschema` walking it through
//! its generic representation traits) was most of what validation added to a proxied request
//! (figures: BENCHMARKS.md, "Policies"). Here a schema made of the common keywords is
//! compiled into plain checks, and one pass over the body's bytes ([`scan`]) checks the
//! grammar and the schema together, building nothing.
//!
//! It only ever answers "valid". Anything else, including "not sure", sends the body down the
//! full path ([`super::json_tape`] and `jsonschema`), which gives the verdict and the failing
//! pointers. So a body this check accepts must be one the full path accepts, and every case it
//! cannot decide exactly is a "not sure":
//! - a schema with any keyword [`Check::compile`] does not know gets no quick check at all;
//! - keywords that only judge one value (`pattern`, `format`, `multipleOf`, `enum`, `const`)
//!   are compiled by `jsonschema` itself and run on that one value, so their semantics are its;
//! - the scanner's own doubts are listed in [`scan`].
//!
//! No crate checks a JSON Schema while scanning the text, hence this module. Unit tests and the
//! `schema` fuzz target hold it to the full path.

mod bounds;
mod class_pattern;
mod scan;
mod written_names;

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::{Map, Number, Value};

use self::{
    bounds::{BoundKind, Bounds},
    class_pattern::ClassPattern,
    written_names::WrittenNames,
};
use super::json_tape::{Num, TapeJson};

/// Keywords that describe and never judge.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Keywords that judge one value alone, left to `jsonschema`.
const VALUE_KEYWORDS: &[&str] = &["pattern", "format", "multipleOf", "enum", "const"];

/// Objects naming more properties (declared or required) than this get no quick check: seen
/// names are kept as bits of a `u64`.
const MAX_NAMED: usize = 64;

/// A schema compiled for the quick check.
#[derive(Debug)]
pub struct QuickCheck {
    root: Rule,
}

impl QuickCheck {
    /// Compiles `schema`, or `None` when it uses a keyword this check does not know.
    pub fn compile(schema: &Value) -> Option<QuickCheck> {
        Some(QuickCheck {
            root: Rule::compile(schema)?,
        })
    }

    /// Whether `body` is one JSON text that matches the schema. `false` means "not sure".
    pub fn accepts(&self, body: &[u8]) -> bool {
        scan::accepts(&self.root, body)
    }
}

/// What a (sub)schema asks of a value.
#[derive(Debug)]
enum Rule {
    /// `true` or `{}`: any value.
    Any,
    /// `false`: no value.
    Never,
    /// Anything else.
    Check(Box<Check>),
}

/// The kinds of value a `type` allows, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Types(u8);

impl Types {
    const NULL: u8 = 1;
    const BOOLEAN: u8 = 2;
    const INTEGER: u8 = 4;
    const NUMBER: u8 = 8;
    const STRING: u8 = 16;
    const ARRAY: u8 = 32;
    const OBJECT: u8 = 64;
    const ALL: Types = Types(127);

    fn of(name: &str) -> Option<u8> {
        Some(match name {
            "null" => Types::NULL,
            "boolean" => Types::BOOLEAN,
            "integer" => Types::INTEGER,
            "number" => Types::NUMBER,
            "string" => Types::STRING,
            "array" => Types::ARRAY,
            "object" => Types::OBJECT,
            _ => return None,
        })
    }

    fn allows(self, kind: u8) -> bool {
        self.0 & kind != 0
    }

    /// Whether an integer is allowed (`number` includes them).
    fn allows_integer(self) -> bool {
        self.allows(Types::INTEGER | Types::NUMBER)
    }
}

/// The checks of one schema object.
#[derive(Debug)]
struct Check {
    types: Types,
    min_length: Option<usize>,
    max_length: Option<usize>,
    bounds: Bounds,
    /// The `pattern`, when it has the shape [`ClassPattern`] reads.
    pattern: Option<ClassPattern>,
    /// The value keywords, compiled by `jsonschema`.
    value: Option<Arc<Validator<TapeJson>>>,
    /// Whether the value keywords judge containers too (`enum`, `const`), which this check
    /// leaves to the full path.
    value_judges_containers: bool,
    object: ObjectCheck,
    array: ArrayCheck,
}

/// What an object's members must be.
#[derive(Debug)]
struct ObjectCheck {
    /// Names that are declared in `properties` or required.
    names: Vec<Box<str>>,
    /// The names as the scanner matches them against the bytes.
    written: WrittenNames,
    /// For each name: its schema, or `None` for a required name that `properties` does not
    /// declare (it is checked by `additional`).
    rules: Vec<Option<Rule>>,
    /// Bits of the names that must be present.
    required: u64,
    /// The rule of the names `properties` does not declare.
    additional: Rule,
    min_members: usize,
    max_members: usize,
}

/// What an array's elements must be.
#[derive(Debug)]
struct ArrayCheck {
    items: Rule,
    min_items: usize,
    max_items: usize,
}

impl Rule {
    fn compile(schema: &Value) -> Option<Rule> {
        match schema {
            Value::Bool(true) => Some(Rule::Any),
            Value::Bool(false) => Some(Rule::Never),
            Value::Object(keywords) => Check::compile(keywords),
            _ => None,
        }
    }
}

impl Check {
    fn compile(keywords: &Map<String, Value>) -> Option<Rule> {
        let mut check = Check {
            types: Types::ALL,
            min_length: None,
            max_length: None,
            bounds: Bounds::default(),
            pattern: None,
            value: None,
            value_judges_containers: false,
            object: ObjectCheck {
                names: Vec::new(),
                written: WrittenNames::default(),
                rules: Vec::new(),
                required: 0,
                additional: Rule::Any,
                min_members: 0,
                max_members: usize::MAX,
            },
            array: ArrayCheck {
                items: Rule::Any,
                min_items: 0,
                max_items: usize::MAX,
            },
        };
        let mut value_keywords = Map::new();
        let mut checks_anything = false;
        for (keyword, argument) in keywords {
            let keyword = keyword.as_str();
            if ANNOTATIONS.contains(&keyword) || keyword.starts_with("x-") {
                continue;
            }
            checks_anything = true;
            if keyword == "pattern" {
                check.pattern = argument.as_str().and_then(ClassPattern::parse);
                if check.pattern.is_some() {
                    continue;
                }
            }
            if VALUE_KEYWORDS.contains(&keyword) {
                value_keywords.insert(keyword.to_owned(), argument.clone());
                continue;
            }
            match keyword {
                "type" => check.types = types(argument)?,
                "minLength" => check.min_length = Some(count(argument)?),
                "maxLength" => check.max_length = Some(count(argument)?),
                "minimum" => check.bounds.add(BoundKind::Minimum, number(argument)?),
                "maximum" => check.bounds.add(BoundKind::Maximum, number(argument)?),
                "exclusiveMinimum" => check
                    .bounds
                    .add(BoundKind::ExclusiveMinimum, number(argument)?),
                "exclusiveMaximum" => check
                    .bounds
                    .add(BoundKind::ExclusiveMaximum, number(argument)?),
                "minProperties" => check.object.min_members = count(argument)?,
                "maxProperties" => check.object.max_members = count(argument)?,
                "additionalProperties" => check.object.additional = Rule::compile(argument)?,
                "properties" => {
                    for (name, schema) in argument.as_object()? {
                        let rule = Rule::compile(schema)?;
                        let at = check.object.name_index(name)?;
                        check.object.rules[at] = Some(rule);
                    }
                }
                "required" => {
                    for name in argument.as_array()? {
                        let at = check.object.name_index(name.as_str()?)?;
                        check.object.required |= 1 << at;
                    }
                }
                "items" => check.array.items = Rule::compile(argument)?,
                "minItems" => check.array.min_items = count(argument)?,
                "maxItems" => check.array.max_items = count(argument)?,
                _ => return None,
            }
        }
        if !checks_anything {
            return Some(Rule::Any);
        }
        check.object.written = WrittenNames::new(&check.object.names);
        if !value_keywords.is_empty() {
            check.value_judges_containers =
                value_keywords.contains_key("enum") || value_keywords.contains_key("const");
            let validator = jsonschema::options_for::<TapeJson>()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&Value::Object(value_keywords))
                .ok()?;
            check.value = Some(Arc::new(validator));
        }
        Some(Rule::Check(Box::new(check)))
    }
}

impl ObjectCheck {
    /// The index of `name`, added if new; `None` past [`MAX_NAMED`] names.
    fn name_index(&mut self, name: &str) -> Option<usize> {
        if let Some(at) = self.names.iter().position(|n| n.as_ref() == name) {
            return Some(at);
        }
        if self.names.len() == MAX_NAMED {
            return None;
        }
        self.names.push(name.into());
        self.rules.push(None);
        Some(self.names.len() - 1)
    }

    /// The rule of the member at `at` ([`WrittenNames::find`]).
    fn rule(&self, at: usize) -> &Rule {
        self.rules
            .get(at)
            .and_then(Option::as_ref)
            .unwrap_or(&self.additional)
    }
}

fn types(argument: &Value) -> Option<Types> {
    match argument {
        Value::String(name) => Types::of(name).map(Types),
        Value::Array(names) => names
            .iter()
            .try_fold(0, |bits, name| Some(bits | Types::of(name.as_str()?)?))
            .map(Types),
        _ => None,
    }
}

fn count(argument: &Value) -> Option<usize> {
    usize::try_from(argument.as_u64()?).ok()
}

fn number(argument: &Value) -> Option<Num> {
    match argument {
        Value::Number(n) => Some(num(n)),
        _ => None,
    }
}

/// A schema's number in the form values take: non-negative integers unsigned.
fn num(n: &Number) -> Num {
    if let Some(u) = n.as_u64() {
        Num::Unsigned(u)
    } else if let Some(i) = n.as_i64() {
        Num::Signed(i)
    } else {
        Num::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests;
