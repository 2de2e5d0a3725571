//! The quick check against the full path (tape and `jsonschema`): it may only say yes where the
//! full path says yes, and it must say yes to the ordinary valid bodies it exists for.

use std::path::Path;

use serde_json::{json, Value};

use super::QuickCheck;
use crate::policy::{
    json_tape::tests::{nested_texts, random_value, Rng, EDGE_TEXTS},
    json_tape::Tape,
    validate::Schema,
};

/// The full path's verdict on `body`: the tape, then `jsonschema`.
fn full_path_accepts(schema: &Schema, body: &[u8]) -> bool {
    let mut text = body.to_vec();
    Tape::parse(&mut text).is_ok_and(|tape| schema.body_errors(&tape).is_empty())
}

/// Checks each `(body, quick answer)` case, and that a yes is the full path's yes too.
fn check_cases(schema_value: &Value, cases: &[(&str, bool)]) {
    let quick = QuickCheck::compile(schema_value).expect("the schema has a quick check");
    let schema: Schema = Schema::compile(schema_value, "test").unwrap();
    for (body, expected) in cases {
        let says = quick.accepts(body.as_bytes());
        assert_eq!(
            says, *expected,
            "quick check of {body} under {schema_value}"
        );
        if says {
            assert!(
                full_path_accepts(&schema, body.as_bytes()),
                "quick yes, full path no: {body} under {schema_value}"
            );
        }
    }
}

fn example(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/examples")
        .join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_example_schemas_have_a_quick_check() {
    for name in [
        "order.schema.json",
        "user.schema.json",
        "feedback.schema.json",
    ] {
        assert!(QuickCheck::compile(&example(name)).is_some(), "{name}");
    }
}

#[test]
fn keywords_it_does_not_know_leave_the_schema_to_the_full_path() {
    for schema in [
        json!({"allOf": [{"type": "object"}]}),
        json!({"$ref": "#/$defs/a", "$defs": {"a": true}}),
        json!({"properties": {"a": {"anyOf": [true]}}}),
        json!({"patternProperties": {"^a": true}}),
        json!({"prefixItems": [true]}),
        json!({"items": {"uniqueItems": true}}),
        json!({"unevaluatedProperties": false}),
        json!({"type": "strin"}),
        json!({"maxLength": -1}),
        json!({"minimum": "1"}),
        json!(3),
    ] {
        assert!(QuickCheck::compile(&schema).is_none(), "{schema}");
    }
    // Annotations and extensions do not judge, so they do not stop it.
    assert!(QuickCheck::compile(&json!({"title": "t", "x-owner": "me", "default": 1})).is_some());
}

#[test]
fn the_order_schema() {
    let items: Vec<String> = (0..29)
        .map(|i| format!(r#"{{"sku": "SKU-{i:04}", "quantity": {}}}"#, i + 1))
        .collect();
    let order = format!(
        r#"{{"customer": "acme-corp", "note": "leave at the door", "items": [{}]}}"#,
        items.join(", ")
    );
    check_cases(
        &example("order.schema.json"),
        &[
            (&order, true),
            (r#" {"customer":"c","items":[]} "#, true),
            (
                r#"{"customer":"c","items":[{"sku":"ABCD","quantity":1000}]}"#,
                true,
            ),
            // Escaped names, and escaped strings whose text is judged, are the full path's.
            (r#"{"cust\u006fmer":"c","items":[]}"#, false),
            (r#"{"customer":"\u0063","items":[]}"#, false),
            // Wrong answers: the full path explains them.
            (r#"{"customer":"c"}"#, false),
            (r#"{"customer":"c","items":[],"extra":1}"#, false),
            (
                r#"{"customer":"c","items":[{"sku":"abcd","quantity":1}]}"#,
                false,
            ),
            (
                r#"{"customer":"c","items":[{"sku":"ABCD","quantity":1001}]}"#,
                false,
            ),
            (
                r#"{"customer":"c","items":[{"sku":"ABCD","quantity":0}]}"#,
                false,
            ),
            (
                r#"{"customer":"c","items":[{"sku":"ABCD","quantity":"1"}]}"#,
                false,
            ),
            (r#"{"customer":7,"items":[]}"#, false),
            (r#"{"customer":"c","items":{}}"#, false),
            // A float where an integer is asked is not sure (1.0 is an integer to JSON Schema).
            (
                r#"{"customer":"c","items":[{"sku":"ABCD","quantity":1.0}]}"#,
                false,
            ),
        ],
    );
}

#[test]
fn strings_count_characters_not_bytes() {
    check_cases(
        &json!({"type": "string", "minLength": 2, "maxLength": 3}),
        &[
            (r#""ab""#, true),
            (r#""äöü""#, true),
            (r#""😀😀😀""#, true),
            // Escaped text is the full path's to judge.
            (r#""\ud83d\ude00\ud83d\ude00""#, false),
            (r#""a\n""#, false),
            (r#""a""#, false),
            (r#""abcd""#, false),
            (r#""😀😀😀😀""#, false),
        ],
    );
}

#[test]
fn numbers_compare_exactly_or_not_at_all() {
    check_cases(
        &json!({"type": "number", "minimum": -2.5, "exclusiveMaximum": 9_007_199_254_740_993_u64}),
        &[
            ("-2", true),
            ("0", true),
            ("9007199254740992", true),
            ("-2.51", false),
            // Past 2^53 an integer and a float cannot be compared in f64: not sure, both ways.
            ("-2.5", false),
            ("9007199254740993", false),
            ("-9007199254740993", false),
        ],
    );
    check_cases(
        &json!({"minimum": -2.5, "maximum": 1e300}),
        &[
            ("-2.4", true),
            ("1e299", true),
            ("7", true),
            ("1e301", false),
            ("-3", false),
            // A float on a bound, or within a few units of its last place, is not sure.
            ("-2.5", false),
            ("-2.5000000000000004", false),
            ("1e300", false),
            // Past f64's range serde_json refuses the text.
            ("1e400", false),
        ],
    );
    // Integer bounds fold into one range; a float bound still applies to integers.
    check_cases(
        &json!({"minimum": 1, "exclusiveMaximum": 10, "maximum": 12, "exclusiveMinimum": 0.5}),
        &[
            ("1", true),
            ("9", true),
            ("9.5", true),
            ("0", false),
            ("10", false),
            ("-1", false),
            ("0.75", false),
        ],
    );
    check_cases(
        &json!({"type": "integer", "exclusiveMinimum": -3, "maximum": u64::MAX}),
        &[
            ("-2", true),
            ("18446744073709551615", true),
            ("-3", false),
            // The tape reads -0 as the integer 0 (docs in json_tape.rs), for both checks.
            ("-0", true),
            ("2.0", false),
            ("18446744073709551616", false),
        ],
    );
}

#[test]
fn types_objects_and_arrays() {
    check_cases(
        &json!({
            "type": ["object", "null"],
            "required": ["id"],
            "minProperties": 1,
            "maxProperties": 3,
            "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2}},
            "additionalProperties": {"type": "boolean"}
        }),
        &[
            ("null", true),
            (r#"{"id":1}"#, true),
            (r#"{"id":1,"tags":["a","b"],"x":true}"#, true),
            // Escapes are fine where only the type is judged.
            (r#"{"id":1,"tags":["a\n\"\u00e9\\"]}"#, true),
            (r#"{"id":1,"tags":["a\x"]}"#, false),
            (r#"{"id":1,"tags":["a\ud800"]}"#, false),
            (r#"{"id":1,"tags":["tab\tok", "raw	tab"]}"#, false),
            (r#"{"id":1,"x":true,"x":false}"#, false),
            (r#"{"id":1,"id":1}"#, false),
            (r#"{"id":1,"tags":[]}"#, false),
            (r#"{"id":1,"tags":["a","b","c"]}"#, false),
            (r#"{"id":1,"x":true,"y":false,"z":true}"#, false),
            (r#"{"id":1,"x":1}"#, false),
            (r#"{"tags":["a"]}"#, false),
            ("[]", false),
            ("true", false),
        ],
    );
    // A required name that `properties` does not declare is judged by `additionalProperties`.
    check_cases(
        &json!({"required": ["a"], "additionalProperties": {"type": "string"}}),
        &[
            (r#"{"a":"x"}"#, true),
            (r#"{"a":1}"#, false),
            ("{}", false),
            ("5", true),
        ],
    );
    check_cases(&json!(true), &[("[1,{\"a\":null}]", true)]);
    // Known names are matched against the bytes only where they are written plainly.
    check_cases(
        &json!({"properties": {"a\"b": {"type": "string"}, "ab": {"type": "integer"}}, "additionalProperties": false}),
        &[
            (r#"{"ab":1}"#, true),
            (r#"{"a\"b":"x"}"#, false),
            (r#"{"a"b":"x"}"#, false),
            (r#"{"ab" :1, "abc":1}"#, false),
            (r#"{"a":1}"#, false),
        ],
    );
    // Names the schema does not name are compared pairwise, up to 16 per object.
    let members = |n: usize| {
        let names: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{{"k{i}":1}}"#)).collect();
        format!("{{{}}}", names.join(","))
    };
    check_cases(
        &json!(true),
        &[
            (&members(16), true),
            (&members(17), false),
            ("{\"a\":{\"b\":1,\"b\":2}}", false),
        ],
    );
    check_cases(&json!(false), &[("1", false), ("{}", false)]);
    check_cases(
        &json!({"items": false}),
        &[("[]", true), ("[1]", false), ("{}", true)],
    );
}

#[test]
fn value_keywords_are_judged_by_jsonschema() {
    check_cases(
        &json!({"enum": ["a", 1, null], "multipleOf": 1}),
        &[
            ("\"a\"", true),
            ("1", true),
            ("null", true),
            ("\"b\"", false),
            ("2", false),
        ],
    );
    // `enum` and `const` judge containers too: those are the full path's.
    check_cases(&json!({"const": [1]}), &[("[1]", false), ("1", false)]);
    check_cases(
        &json!({"type": "string", "format": "email", "pattern": "^[a-z@.]+$"}),
        &[("\"a@b.c\"", true), ("\"A@b.c\"", false)],
    );
}

#[test]
fn says_yes_only_to_texts_serde_json_accepts() {
    let quick = QuickCheck::compile(&json!(true)).unwrap();
    let nested = nested_texts(&[126, 127, 128, 129]);
    let mut yes = 0;
    for text in EDGE_TEXTS
        .iter()
        .copied()
        .chain(nested.iter().map(Vec::as_slice))
    {
        if quick.accepts(text) {
            yes += 1;
            assert!(
                serde_json::from_slice::<Value>(text).is_ok(),
                "quick yes, serde_json no: {}",
                String::from_utf8_lossy(text)
            );
            let mut copy = text.to_vec();
            assert!(Tape::parse(&mut copy).is_ok());
        }
    }
    // The plain texts among them are decided here, 127 levels of nesting included.
    for text in [
        &b"0"[..],
        b"-0.0",
        b"1E2",
        b" \t\r\nnull\n",
        b"[[[]]]",
        br#"["a", {"b": [null, false, {"c": ""}]}]"#,
        &nested[2],
        &nested[3],
    ] {
        assert!(quick.accepts(text), "{}", String::from_utf8_lossy(text));
    }
    assert!(!quick.accepts(&nested[4]) && !quick.accepts(&nested[5]));
    assert!(yes >= 10, "{yes}");
}

#[test]
fn agrees_with_the_full_path_on_random_documents() {
    let schemas = [
        example("order.schema.json"),
        example("user.schema.json"),
        json!({"type": "object", "additionalProperties": {"type": "array", "maxItems": 2, "items": {"type": ["number", "null"]}}}),
        json!({
            "type": ["object", "array", "string", "integer"],
            "minProperties": 1,
            "properties": {
                "a": {"enum": [1, "red", null, [1, 2]]},
                "kind": {"type": ["string", "integer"], "minLength": 3, "maximum": 1000, "multipleOf": 3},
                "quantity": {"type": "number", "exclusiveMinimum": 1, "maximum": 1001},
                "tags": {"type": "array", "items": {"type": "string", "format": "date", "pattern": "^[a-z0-9-]*$"}}
            },
            "items": {"type": ["string", "object", "null", "boolean"], "maxLength": 4},
            "maxLength": 8
        }),
        json!(true),
    ];
    let mut rng = Rng(0x0dd5_eed5_1234_5678);
    let mut counts = Vec::new();
    for schema_value in &schemas {
        let quick = QuickCheck::compile(schema_value).unwrap();
        let schema: Schema = Schema::compile(schema_value, "test").unwrap();
        let (mut full_yes, mut quick_yes) = (0, 0);
        for round in 0..3_000 {
            let value = random_value(&mut rng, 0);
            let text = if round % 2 == 0 {
                serde_json::to_vec(&value).unwrap()
            } else {
                serde_json::to_vec_pretty(&value).unwrap()
            };
            let full = full_path_accepts(&schema, &text);
            let says = quick.accepts(&text);
            assert!(
                !says || full,
                "quick yes, full path no under {schema_value}: {value}"
            );
            full_yes += usize::from(full);
            quick_yes += usize::from(says);
        }
        counts.push((quick_yes, full_yes));
    }
    // It decides most valid documents itself (escaped text and floats are its doubts).
    let (quick_yes, full_yes) = counts
        .iter()
        .fold((0, 0), |(q, f), (qs, fs)| (q + qs, f + fs));
    assert!(
        full_yes > 3_000 && quick_yes * 2 > full_yes,
        "(quick yes, full yes) per schema: {counts:?}"
    );
}
