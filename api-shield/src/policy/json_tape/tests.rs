//! Unit tests of the body tape: the representation contract, round trips, refusals, and
//! validation that agrees with `serde_json::Value` on random documents.

use jsonschema::json::Node;
use serde_json::{json, Value};

use super::{Tape, TapeError, TapeJson};

/// The document in `text`, parsed on the tape and read back as a `Value`.
fn parse(text: &[u8]) -> Result<Value, TapeError> {
    let mut copy = text.to_vec();
    Tape::parse(&mut copy).map(|tape| tape.root().to_value().into_owned())
}

#[test]
fn meets_the_representation_contract() {
    let mut text = serde_json::to_vec(&jsonschema::json::conformance::document()).unwrap();
    let tape = Tape::parse(&mut text).unwrap();
    jsonschema::json::conformance::assert_conformance::<TapeJson>(&tape.root());
}

#[test]
fn round_trips_to_the_same_value() {
    let text = br#"{"a": [1, -2, 3.5, 18446744073709551615, 1e300, -0.0, "x\u00e9\n"], "b": {"c": null, "d": true}, "": []}"#;
    let value: Value = serde_json::from_slice(text).unwrap();
    assert_eq!(parse(text).unwrap(), value);
    // Past the size the per-thread scratch space is kept for, and small again after it.
    let large: Value = (0..20_000).map(|i| json!({"n": i})).collect();
    let text = serde_json::to_vec(&large).unwrap();
    assert!(text.len() > 64 * 1024);
    assert_eq!(parse(&text).unwrap(), large);
    assert_eq!(
        parse(b"[1, {\"a\": \"b\"}]").unwrap(),
        json!([1, {"a": "b"}])
    );
}

#[test]
fn repeated_names_and_malformed_text_are_refused() {
    assert!(matches!(
        parse(br#"{"a": 1, "b": 2, "a": 3}"#),
        Err(TapeError::DuplicateName)
    ));
    let many = (0..40)
        .map(|i| format!("\"k{i}\": {i}"))
        .collect::<Vec<_>>()
        .join(",");
    let repeated = format!("{{{many}, \"k3\": 0}}");
    assert!(matches!(
        parse(repeated.as_bytes()),
        Err(TapeError::DuplicateName)
    ));
    // Escapes are compared decoded: "\u0061" is "a".
    assert!(matches!(
        parse(br#"{"a": 1, "\u0061": 2}"#),
        Err(TapeError::DuplicateName)
    ));
    for bad in [&b"{"[..], b"[1,]", b"{\"a\" 1}", b"1 2", b"", b"nul"] {
        assert!(matches!(parse(bad), Err(TapeError::Malformed)), "{bad:?}");
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(matches!(parse(deep.as_bytes()), Err(TapeError::Malformed)));
    assert!(parse(json!({"a": {"a": {"a": 1}}}).to_string().as_bytes()).is_ok());
}

/// A small deterministic generator (xorshift), so a failure names its seed.
pub(crate) struct Rng(pub(crate) u64);

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
    "customer", "note", "items", "sku", "quantity", "a", "b", "kind", "tags", "x-extra", "n\u{e9}",
    "",
];

pub(crate) fn random_value(rng: &mut Rng, depth: u32) -> Value {
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
    let order: Value = serde_json::from_str(include_str!(
        "../../../../config/examples/order.schema.json"
    ))
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
            let mut text = serde_json::to_vec(&value).unwrap();
            let tape = Tape::parse(&mut text).unwrap();
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

/// Texts at the edges of the JSON grammar and of number and string reading.
pub(crate) const EDGE_TEXTS: &[&[u8]] = &[
    b"0",
    b"-0.0",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-9223372036854775808",
    b"-9223372036854775809",
    b"123456789012345678901234567890",
    b"0.1",
    b"2.2250738585072011e-308",
    b"1.7976931348623157e308",
    b"1E2",
    b"1e+2",
    b"01",
    b"-",
    b"1.",
    b".5",
    b"+1",
    b"NaN",
    b"Infinity",
    b"tru",
    b"true ",
    b" \t\r\nnull\n",
    b"\x0bnull",
    b"\xef\xbb\xbfnull",
    br#""\ud800""#,
    br#""\udc00""#,
    br#""\ud83d\ude00""#,
    br#""\u00e9\n\t\/\\\"""#,
    br#""\x""#,
    b"\"a\x01b\"",
    b"\"a\x7fb\"",
    b"\"\xff\"",
    b"\"\xc3\xa9\"",
    b"\"\xed\xa0\x80\"",
    b"[1,2,]",
    b"[,]",
    b"{\"a\":1,}",
    b"{\"a\":1 \"b\":2}",
    b"{1:2}",
    b"[1] [2]",
    b"[]",
    b"{}",
    b"[[[]]]",
    b"\"unterminated",
    b"[\"a\", {\"b\": [null, false, {\"c\": \"\"}]}]",
    b"\x00",
    b"[1]\x00",
];

/// For each depth, arrays and objects nested that deep.
pub(crate) fn nested_texts(depths: &[usize]) -> Vec<Vec<u8>> {
    depths
        .iter()
        .flat_map(|&depth| {
            [
                "[".repeat(depth) + &"]".repeat(depth),
                "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth),
            ]
        })
        .map(String::into_bytes)
        .collect()
}

#[test]
fn accepts_and_reads_what_serde_json_does() {
    let texts = EDGE_TEXTS;
    let nested = nested_texts(&[126, 127, 128, 129, 130]);
    let differing: Vec<String> = texts
        .iter()
        .copied()
        .chain(nested.iter().map(Vec::as_slice))
        .filter(|text| parse(text).ok() != serde_json::from_slice::<Value>(text).ok())
        .map(|text| {
            format!(
                "{}: {:?} vs {:?}",
                String::from_utf8_lossy(text),
                parse(text),
                serde_json::from_slice::<Value>(text).map_err(|e| e.to_string())
            )
        })
        .collect();
    assert!(differing.is_empty(), "{differing:#?}");
    // One difference: serde_json reads `-0` as the float -0.0, the tape as the integer 0. JSON
    // Schema compares numbers by value, so no keyword tells them apart.
    assert_eq!(parse(b"-0").unwrap(), json!(0));
    let zero = json!({"type": "integer", "const": 0, "enum": [0], "maximum": 0, "minimum": 0});
    let values = jsonschema::validator_for(&zero).unwrap();
    let tapes = jsonschema::options_for::<TapeJson>().build(&zero).unwrap();
    let mut text = b"-0".to_vec();
    assert!(values.is_valid(&serde_json::from_slice::<Value>(b"-0").unwrap()));
    assert!(tapes.is_valid(Tape::parse(&mut text).unwrap().root()));
}
