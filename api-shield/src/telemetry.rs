//! Logging setup, the metrics registry, and the kernel counters read at scrape time.

pub mod admin;
pub mod drops;
pub mod kernel;
mod logging;
pub mod metrics;

pub use logging::{init_logging, LogFormat};
pub use metrics::{method_label, metrics, Metrics};
