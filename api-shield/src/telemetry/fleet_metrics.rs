//! The fleet's metrics: whether this host reaches Redis, how long Redis takes to answer, how
//! often the host fell back to local-only decisions and resynced, and what happened to the bans
//! it received and shared. Registered whether or not a fleet is configured (at zero), so the
//! shipped alert rules and dashboard always find their series.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};

use super::metrics::{counter, gauge, plain_counter};

/// Round-trip buckets (seconds), from 100 µs to 1 s.
const ROUND_TRIP_BUCKETS: [f64; 11] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
];

/// The fleet's metrics.
#[derive(Debug)]
pub struct FleetMetrics {
    /// `api_shield_fleet_enabled`.
    pub enabled: IntGauge,
    /// `api_shield_fleet_connected`.
    pub connected: IntGauge,
    /// `api_shield_fleet_round_trip_seconds`.
    pub round_trip: Histogram,
    /// `api_shield_fleet_fallbacks_total`.
    pub fallbacks: IntCounter,
    /// `api_shield_fleet_resyncs_total`.
    pub resyncs: IntCounter,
    /// `api_shield_fleet_bans_received_total{outcome}`.
    pub received: IntCounterVec,
    /// `api_shield_fleet_bans_shared_total{outcome}`.
    pub shared: IntCounterVec,
    /// `api_shield_fleet_signals_dropped_total`.
    pub signals_dropped: IntCounter,
    /// `api_shield_fleet_escalation_bans_total`.
    pub escalation_bans: IntCounter,
}

impl FleetMetrics {
    pub(super) fn register(registry: &Registry) -> FleetMetrics {
        let round_trip = Histogram::with_opts(
            HistogramOpts::new(
                "api_shield_fleet_round_trip_seconds",
                "Time Redis took to answer the fleet's commands (heartbeats, shares, resyncs).",
            )
            .buckets(ROUND_TRIP_BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        registry
            .register(Box::new(round_trip.clone()))
            .expect("registered once");
        let metrics = FleetMetrics {
            enabled: gauge(
                registry,
                "api_shield_fleet_enabled",
                "1 when the config has a [fleet] table.",
            ),
            connected: gauge(
                registry,
                "api_shield_fleet_connected",
                "1 while this host reaches the fleet's Redis, 0 while it decides alone.",
            ),
            round_trip,
            fallbacks: plain_counter(
                registry,
                "api_shield_fleet_fallbacks_total",
                "Times this host lost Redis and fell back to local-only decisions.",
            ),
            resyncs: plain_counter(
                registry,
                "api_shield_fleet_resyncs_total",
                "Full resyncs of the fleet's bans (at each connect).",
            ),
            received: counter(
                registry,
                "api_shield_fleet_bans_received_total",
                "Bans and unbans read from the fleet, by outcome (applied, lifted, refused, \
                 expired, unchanged).",
                &["outcome"],
            ),
            shared: counter(
                registry,
                "api_shield_fleet_bans_shared_total",
                "Bans and unbans this host shared with the fleet, by outcome (published, \
                 dropped: the queue was full or the ban expired before Redis came back).",
                &["outcome"],
            ),
            signals_dropped: plain_counter(
                registry,
                "api_shield_fleet_signals_dropped_total",
                "Escalation signals not counted fleet-wide: the queue to Redis was full or Redis \
                 was away (they still count on this host).",
            ),
            escalation_bans: plain_counter(
                registry,
                "api_shield_fleet_escalation_bans_total",
                "Bans this host made because a source crossed an escalation threshold counted \
                 across the fleet.",
            ),
        };
        for outcome in ["applied", "lifted", "refused", "expired", "unchanged"] {
            metrics.received.with_label_values(&[outcome]);
        }
        for outcome in ["published", "dropped"] {
            metrics.shared.with_label_values(&[outcome]);
        }
        metrics
    }
}
