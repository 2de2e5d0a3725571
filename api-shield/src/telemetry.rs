//! Logging setup, the metrics registry, and the kernel counters read at scrape time.

pub(crate) mod access_line;
pub(crate) mod access_log;
pub(crate) mod admin;
pub(crate) mod blocklist_metrics;
pub(crate) mod crowdsec_metrics;
pub(crate) mod drops;
pub(crate) mod fleet_metrics;
pub(crate) mod kernel;
pub(crate) mod log_limit;
mod logging;
pub(crate) mod metrics;

pub use access_log::access_log;
pub use logging::{init_logging, LogFormat};
pub use metrics::{method_label, metrics, Metrics};

/// An error and its causes on one line, each cause once: a message that already quotes its
/// cause (as many library errors do) is not followed by the same text again.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}
