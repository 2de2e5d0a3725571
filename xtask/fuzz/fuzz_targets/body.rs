//! Request bodies: the tape that JSON Schema validation reads (simd-json) accepts exactly the
//! texts serde_json accepts and reads the same document from them. Never a panic. The known
//! differences are checked, not skipped: a repeated member name is refused (serde_json keeps
//! the last one), and `-0` reads as the integer 0 (serde_json: the float -0.0).
#![no_main]

use api_shield::policy::json_tape::{Tape, TapeError, TapeJson};
use jsonschema::json::Node;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `value` with every negative zero made 0.
fn zeroed(value: Value) -> Value {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => {
            Value::from(0)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(zeroed).collect()),
        Value::Object(members) => {
            Value::Object(members.into_iter().map(|(k, v)| (k, zeroed(v))).collect())
        }
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let theirs = serde_json::from_slice::<Value>(data);
    let mut text = data.to_vec();
    match Tape::parse(&mut text) {
        Ok(tape) => {
            let ours = Node::<TapeJson>::to_value(&tape.root()).into_owned();
            let theirs = theirs.expect("the tape accepted a text serde_json refuses");
            assert_eq!(zeroed(ours), zeroed(theirs));
        }
        Err(TapeError::DuplicateName) => {
            assert!(
                theirs.is_ok(),
                "a malformed text was called a repeated name"
            )
        }
        Err(TapeError::Malformed) => {
            assert!(
                theirs.is_err(),
                "the tape refused a text serde_json accepts"
            )
        }
    }
});
