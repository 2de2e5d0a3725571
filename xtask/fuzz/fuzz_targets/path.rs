//! Request paths through normalisation and routing. A normalised path is absolute, has no
//! empty, `.` or `..` segment, no encoded slash or NUL, and normalising it again changes
//! nothing; the shortcut for paths already normal answers as the full rewrite does; routing
//! it never panics, and a route of `/admin/*` is matched by every path whose
//! normalised form is under `/admin`.
#![no_main]

use api_shield::{
    pattern::PathPattern,
    proxy::request::{
        normalize::{normalize, rewrite},
        routing::{Route, RouteMatch, RouteTable},
    },
};
use libfuzzer_sys::fuzz_target;

fn table() -> RouteTable<()> {
    let route = |name: &str, path: &str, methods: Option<Vec<String>>| Route {
        name: name.to_owned(),
        host: None,
        path: PathPattern::parse(path).unwrap(),
        methods,
        target: (),
    };
    RouteTable::new(vec![
        route("admin", "/admin/*", None),
        route("user", "/api/v1/users/{id}", Some(vec!["GET".to_owned()])),
        route("health", "/health", None),
    ])
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let normalized = normalize(raw);
    assert_eq!(normalized, rewrite(raw), "the shortcut differs: {raw:?}");
    let Ok(path) = normalized else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        assert!(*segment != "." && *segment != "..", "{raw:?} -> {path:?}");
        assert!(
            segment.len() > 0 || i == segments.len() - 1,
            "{raw:?} -> {path:?}"
        );
    }
    let lower = path.to_ascii_lowercase();
    assert!(
        !lower.contains("%2f") && !lower.contains("%00") && !path.contains('\0'),
        "{raw:?} -> {path:?}"
    );
    assert_eq!(
        normalize(&path).as_deref(),
        Ok(path.as_str()),
        "not idempotent: {raw:?}"
    );
    let table = table();
    let found = table.find(None, &path, "GET");
    if path == "/admin" || path.starts_with("/admin/") {
        assert!(
            matches!(found, RouteMatch::Found { route, .. } if route.name == "admin"),
            "{raw:?} -> {path:?} escaped the admin route"
        );
    }
});
