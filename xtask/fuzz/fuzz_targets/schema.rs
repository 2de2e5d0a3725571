//! The quick check of request bodies says yes only where the full path (the tape and
//! `jsonschema`) says yes, under schemas that use every keyword it knows. Never a panic.
#![no_main]

use std::sync::OnceLock;

use api_shield::policy::{json_tape::Tape, quick_check::QuickCheck, validate::Schema};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// The benchmarks' order schema and one that uses every keyword the quick check knows.
fn schemas() -> &'static [(QuickCheck, Schema, Value)] {
    static SCHEMAS: OnceLock<Vec<(QuickCheck, Schema, Value)>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let order: Value = serde_json::from_str(include_str!(
            "../../../config/examples/order.schema.json"
        ))
        .unwrap();
        let broad = json!({
            "type": ["object", "array", "null"],
            "minProperties": 1,
            "maxProperties": 8,
            "required": ["id", "ghost"],
            "properties": {
                "id": {"type": "integer", "exclusiveMinimum": -9007199254740993_i64, "maximum": 1e20},
                "price": {"type": "number", "minimum": -0.5, "exclusiveMaximum": 18446744073709551615_u64, "multipleOf": 0.25},
                "name": {"type": "string", "minLength": 1, "maxLength": 4, "pattern": "^[a-zé😀]*$"},
                "code": {"type": "string", "pattern": "^[A-Z0-9-]{2,4}$"},
                "slug": {"type": "string", "pattern": "^[-a-c]+$", "minLength": 2},
                "kind": {"enum": ["a", 1, null, [1], {"k": 1}]},
                "flag": {"const": true},
                "tags": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": ["string", "boolean"]}},
                "none": false,
                "any": true
            },
            "additionalProperties": {"type": "object", "additionalProperties": {"maxLength": 2}},
            "items": {"type": "integer", "minimum": -3}
        });
        [order, broad]
            .into_iter()
            .map(|value| {
                (
                    QuickCheck::compile(&value).expect("a quick check"),
                    Schema::compile(&value, "fuzz").unwrap(),
                    value,
                )
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for (quick, schema, value) in schemas() {
        if quick.accepts(data) {
            let mut text = data.to_vec();
            let tape = Tape::parse(&mut text).expect("quick yes to a text the tape refuses");
            assert!(
                schema.body_errors(&tape).is_empty(),
                "quick yes, full path no under {value}"
            );
        }
    }
});
