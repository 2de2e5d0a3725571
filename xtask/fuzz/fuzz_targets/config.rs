//! Config text through the parser and validator: never a panic, and an error always names a
//! location in the file given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = api_shield::config::parse(text, std::path::Path::new("fuzz.toml")) {
        assert!(error.to_string().starts_with("fuzz.toml"), "{error}");
    }
});
