//! OpenAPI documents (JSON or YAML) through the importer: never a panic; every operation it
//! returns has a path that starts with `/` and an upper-case method, and its validation runs on
//! an arbitrary body and query without panicking.
#![no_main]

use api_shield::policy::openapi;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(document) = openapi::parse(text, "openapi[0].file") else {
        return;
    };
    let Ok(operations) = openapi::operations(&document, "/api", "openapi[0].file") else {
        return;
    };
    for operation in operations {
        assert!(operation.path.starts_with('/'), "{}", operation.path);
        assert!(
            operation.method.bytes().all(|b| b.is_ascii_uppercase()),
            "{}",
            operation.method
        );
        let _ = operation.validation.check_body(data);
        let _ = operation.validation.check_head(
            &http::HeaderMap::new(),
            Some(text.get(..text.len().min(64)).unwrap_or("")),
        );
    }
});
