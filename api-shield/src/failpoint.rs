//! Fail points for tests: with `API_SHIELD_FAILPOINTS=reload-compile,reload-maps` in its
//! environment, a debug build fails at each named point once per mention; release builds
//! compile every point to `false`. The reload tests use them to fail a reload at each step and
//! check that nothing changed.
//!
//! Written here rather than taken from the `fail` crate: its points switch on with a cargo
//! feature, so the tests would run a binary built with other features than `cargo test`
//! builds, and every test command would have to name the feature.

/// Whether the point `name` fails now (and is used up).
pub(crate) fn hit(name: &str) -> bool {
    #[cfg(debug_assertions)]
    {
        static ARMED: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);
        let mut armed = ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let points = armed.get_or_insert_with(|| {
            std::env::var("API_SHIELD_FAILPOINTS")
                .unwrap_or_default()
                .split(',')
                .filter(|point| !point.is_empty())
                .map(str::to_owned)
                .collect()
        });
        if let Some(at) = points.iter().position(|point| point == name) {
            points.remove(at);
            tracing::warn!(point = name, "fail point hit (API_SHIELD_FAILPOINTS)");
            return true;
        }
        false
    }
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        false
    }
}
