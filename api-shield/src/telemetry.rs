//! Logging setup (and, later, the metrics registry).

mod logging;

pub use logging::{init_logging, LogFormat};
