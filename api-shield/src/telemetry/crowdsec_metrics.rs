//! The CrowdSec bouncer's metrics: whether the last pull of the Local API's decision stream
//! succeeded and when one last did, what became of the decisions it brought (applied,
//! lifted, refused by the guard rails, ignored for their type or scope), and the escalation
//! bans reported back. Registered whether or
//! not a `[crowdsec]` table is configured (at zero), so the shipped alert rules always find
//! their series.

use prometheus::{IntCounterVec, IntGauge, Registry};

use super::metrics::{counter, gauge};

/// The bouncer's metrics.
#[derive(Debug)]
pub struct CrowdsecMetrics {
    /// `api_shield_crowdsec_enabled`.
    pub enabled: IntGauge,
    /// `api_shield_crowdsec_connected`.
    pub connected: IntGauge,
    /// `api_shield_crowdsec_last_pull_timestamp_seconds`.
    pub last_pull: IntGauge,
    /// `api_shield_crowdsec_pulls_total{result}`.
    pub pulls: IntCounterVec,
    /// `api_shield_crowdsec_decisions_total{outcome}`.
    pub decisions: IntCounterVec,
    /// `api_shield_crowdsec_bans`.
    pub bans: IntGauge,
    /// `api_shield_crowdsec_reports_total{result}`.
    pub reports: IntCounterVec,
}

impl CrowdsecMetrics {
    pub(super) fn register(registry: &Registry) -> CrowdsecMetrics {
        CrowdsecMetrics {
            enabled: gauge(
                registry,
                "api_shield_crowdsec_enabled",
                "1 when the config has a [crowdsec] table.",
            ),
            connected: gauge(
                registry,
                "api_shield_crowdsec_connected",
                "1 while the last pull of the CrowdSec Local API succeeded.",
            ),
            last_pull: gauge(
                registry,
                "api_shield_crowdsec_last_pull_timestamp_seconds",
                "Unix time of the last successful pull of the CrowdSec decision stream.",
            ),
            pulls: counter(
                registry,
                "api_shield_crowdsec_pulls_total",
                "Pulls of the CrowdSec decision stream, by result (ok, error).",
                &["result"],
            ),
            decisions: counter(
                registry,
                "api_shield_crowdsec_decisions_total",
                "CrowdSec decisions by outcome (applied, unchanged, lifted, refused, ignored).",
                &["outcome"],
            ),
            bans: gauge(
                registry,
                "api_shield_crowdsec_bans",
                "Networks banned at the NIC by CrowdSec decisions in force.",
            ),
            reports: counter(
                registry,
                "api_shield_crowdsec_reports_total",
                "Escalation bans reported to the CrowdSec Local API as alerts, by result (sent, \
                 failed, dropped).",
                &["result"],
            ),
        }
    }
}
