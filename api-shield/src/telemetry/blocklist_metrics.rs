//! The blocklists' metrics, per list: entries in force, lines refused in the version read last,
//! looks at the source by outcome, when one last succeeded and how long applying the last
//! change took. The packets each list dropped come from the kernel (`kernel.rs`,
//! `api_shield_xdp_list_packets_total`).

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::metrics::{counter, gauge_vec};

/// The blocklists' metrics.
#[derive(Debug)]
pub struct BlocklistMetrics {
    /// `api_shield_blocklist_entries{list}`.
    pub entries: IntGaugeVec,
    /// `api_shield_blocklist_refused_lines{list}`.
    pub refused: IntGaugeVec,
    /// `api_shield_blocklist_updates_total{list,outcome}`.
    pub updates: IntCounterVec,
    /// `api_shield_blocklist_last_success_timestamp_seconds{list}`.
    pub last_success: IntGaugeVec,
    /// `api_shield_blocklist_apply_seconds{list}`.
    pub apply_seconds: GaugeVec,
}

impl BlocklistMetrics {
    pub(super) fn register(registry: &Registry) -> BlocklistMetrics {
        BlocklistMetrics {
            entries: gauge_vec(
                registry,
                "api_shield_blocklist_entries",
                "Networks of the blocklist in the kernel's deny table.",
                &["list"],
            ),
            refused: gauge_vec(
                registry,
                "api_shield_blocklist_refused_lines",
                "Lines of the blocklist's latest version refused (not an address, host bits, too \
                 broad, inside the allow list, or no room in fastpath.max_deny).",
                &["list"],
            ),
            updates: counter(
                registry,
                "api_shield_blocklist_updates_total",
                "Looks at the blocklist's source, by outcome (applied, unchanged, failed).",
                &["list", "outcome"],
            ),
            last_success: gauge_vec(
                registry,
                "api_shield_blocklist_last_success_timestamp_seconds",
                "Unix time the blocklist's source was last read or found unchanged.",
                &["list"],
            ),
            apply_seconds: {
                let metric = GaugeVec::new(
                    Opts::new(
                        "api_shield_blocklist_apply_seconds",
                        "Time the blocklist's last change took to read and apply.",
                    ),
                    &["list"],
                )
                .expect("a valid metric");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("registered once");
                metric
            },
        }
    }
}
