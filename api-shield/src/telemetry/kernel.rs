//! The XDP program's counters as Prometheus metrics, read from its per-CPU maps at scrape time
//! (so a scrape costs map reads, and packets cost nothing extra): packets and bytes by action
//! and reason, packets and bytes dropped per deny list, and the bans in force.

use std::sync::{Arc, Mutex};

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    IntCounterVec, IntGauge, Opts,
};

use crate::fastpath::{PinnedMaps, SystemClock};

/// Reads the kernel maps when scraped.
pub(crate) struct KernelCollector {
    maps: Arc<Mutex<PinnedMaps>>,
    packets: IntCounterVec,
    bytes: IntCounterVec,
    list_packets: IntCounterVec,
    list_bytes: IntCounterVec,
    bans: IntGauge,
    descs: Vec<Desc>,
}

impl std::fmt::Debug for KernelCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCollector").finish_non_exhaustive()
    }
}

impl KernelCollector {
    /// A collector over the daemon's maps.
    pub(crate) fn new(maps: Arc<Mutex<PinnedMaps>>) -> KernelCollector {
        let packets = IntCounterVec::new(
            Opts::new(
                "api_shield_xdp_packets_total",
                "Packets the XDP program saw, by action (pass, drop, dry_run, answer) and reason.",
            ),
            &["action", "reason"],
        )
        .expect("a valid metric");
        let bytes = IntCounterVec::new(
            Opts::new(
                "api_shield_xdp_bytes_total",
                "Bytes the XDP program saw, by action and reason.",
            ),
            &["action", "reason"],
        )
        .expect("a valid metric");
        let list_packets = IntCounterVec::new(
            Opts::new(
                "api_shield_xdp_list_packets_total",
                "Packets dropped by deny entries (counted only in a dry run), by list: `deny` for \
                 fastpath.deny, else the blocklist's name.",
            ),
            &["list"],
        )
        .expect("a valid metric");
        let list_bytes = IntCounterVec::new(
            Opts::new(
                "api_shield_xdp_list_bytes_total",
                "Bytes dropped by deny entries, by list.",
            ),
            &["list"],
        )
        .expect("a valid metric");
        let bans = IntGauge::new(
            "api_shield_xdp_active_bans",
            "Bans in force in the kernel ban map.",
        )
        .expect("a valid metric");
        let descs = packets
            .desc()
            .into_iter()
            .chain(bytes.desc())
            .chain(list_packets.desc())
            .chain(list_bytes.desc())
            .chain(bans.desc())
            .cloned()
            .collect();
        KernelCollector {
            maps,
            packets,
            bytes,
            list_packets,
            list_bytes,
            bans,
            descs,
        }
    }
}

impl Collector for KernelCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let maps = self.maps.lock().expect("the maps lock is never poisoned");
        match maps.stats() {
            Ok(stats) => {
                for row in &stats.counters {
                    let labels = [row.action.as_ref(), row.reason.as_ref()];
                    // Counters only grow: set the series to the kernel's sum.
                    let packets = self.packets.with_label_values(&labels);
                    packets.inc_by(row.packets.saturating_sub(packets.get()));
                    let bytes = self.bytes.with_label_values(&labels);
                    bytes.inc_by(row.bytes.saturating_sub(bytes.get()));
                }
            }
            Err(error) => tracing::warn!(%error, "reading the XDP counters failed"),
        }
        match maps.list_stats() {
            Ok(rows) => {
                for row in &rows {
                    let packets = self.list_packets.with_label_values(&[row.list.as_str()]);
                    packets.inc_by(row.packets.saturating_sub(packets.get()));
                    let bytes = self.list_bytes.with_label_values(&[row.list.as_str()]);
                    bytes.inc_by(row.bytes.saturating_sub(bytes.get()));
                }
            }
            Err(error) => tracing::warn!(%error, "reading the deny lists' counters failed"),
        }
        match maps.bans(&SystemClock) {
            Ok(bans) => self.bans.set(i64::try_from(bans.len()).unwrap_or(i64::MAX)),
            Err(error) => tracing::warn!(%error, "reading the ban map failed"),
        }
        let mut families = self.packets.collect();
        families.extend(self.bytes.collect());
        families.extend(self.list_packets.collect());
        families.extend(self.list_bytes.collect());
        families.extend(self.bans.collect());
        families
    }
}
