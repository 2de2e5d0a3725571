//! Reporting back: escalation bans this daemon makes are pushed to the Local API as alerts
//! carrying a ban decision, so every other bouncer the operator runs on that LAPI (nginx, a
//! cloud firewall, other hosts) enforces what api-shield saw at L7. The daemon logs in as a
//! machine (`POST /v1/watchers/login`, a token renewed when refused) and posts what escalation
//! hands it (`POST /v1/alerts`), in batches, off the request path: a full queue drops a
//! report (counted), a LAPI that is down costs a few retries and a log line, never a wait
//! anywhere else.
//!
//! The decision is reported with the time the ban has left, in whole seconds, so the copy the
//! bouncer pulls back ends no later than the ban it copies and never replaces it.

use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::mpsc;

use super::lapi::{Lapi, PullError};
use crate::{config::Password, decisions::Reported, telemetry::metrics};

/// Reports waiting to be posted, at most.
pub(super) const QUEUE: usize = 1024;
/// Alerts posted in one request, at most.
const BATCH: usize = 100;
/// Attempts per batch before it is given up (counted as failed).
const ATTEMPTS: u32 = 3;

/// Who reports.
pub(super) struct Machine {
    pub id: String,
    pub password: Password,
}

/// Posts what arrives on `reports` until the queue closes.
pub(super) async fn report_forever(
    lapi: Lapi,
    machine: Machine,
    mut reports: mpsc::Receiver<Reported>,
) {
    let mut token: Option<String> = None;
    let mut failing = false;
    while let Some(first) = reports.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match reports.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let now = SystemTime::now();
        let alerts: Vec<serde_json::Value> = batch.iter().filter_map(|r| alert(r, now)).collect();
        if alerts.is_empty() {
            continue;
        }
        let mut outcome = Err(PullError::Timeout);
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
            }
            if token.is_none() {
                match lapi.login(&machine.id, &machine.password).await {
                    Ok(fresh) => token = Some(fresh),
                    Err(error) => {
                        outcome = Err(error);
                        continue;
                    }
                }
            }
            outcome = lapi
                .post_alerts(token.as_deref().unwrap_or_default(), &alerts)
                .await;
            match &outcome {
                Ok(()) => break,
                // An expired token: log in again.
                Err(PullError::Refused(_)) => token = None,
                Err(_) => {}
            }
        }
        let sent = alerts.len() as u64;
        match outcome {
            Ok(()) => {
                metrics()
                    .crowdsec
                    .reports
                    .with_label_values(&["sent"])
                    .inc_by(sent);
                if failing {
                    tracing::info!("crowdsec: reporting escalation bans again");
                }
                failing = false;
            }
            Err(error) => {
                metrics()
                    .crowdsec
                    .reports
                    .with_label_values(&["failed"])
                    .inc_by(sent);
                if !failing {
                    tracing::error!(%error, lost = sent, "crowdsec: cannot report escalation bans to the LAPI");
                }
                failing = true;
            }
        }
    }
}

/// The alert for one escalation ban: its scenario is `api-shield/` and the ban's reason, its
/// decision a ban for the time left (whole seconds); `None` for a ban already over or without
/// an end.
fn alert(report: &Reported, now: SystemTime) -> Option<serde_json::Value> {
    let ttl = report.ttl?;
    let elapsed = now.duration_since(report.at).unwrap_or_default();
    let left = ttl.checked_sub(elapsed)?.as_secs();
    if left == 0 {
        return None;
    }
    let (scope, value) = scope_of(report.target);
    let scenario = format!("api-shield/{}", report.reason);
    let at = humantime::format_rfc3339_seconds(report.at).to_string();
    let ip = match report.target {
        IpNet::V4(net) if net.prefix_len() == 32 => Some(net.addr().to_string()),
        IpNet::V6(net) if net.prefix_len() == 128 => Some(net.addr().to_string()),
        _ => None,
    };
    let mut source = serde_json::json!({ "scope": scope, "value": value });
    if let Some(ip) = ip {
        source["ip"] = serde_json::Value::String(ip);
    } else {
        source["range"] = serde_json::Value::String(value.clone());
    }
    Some(serde_json::json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": "",
        "message": format!("api-shield banned {value} at the NIC ({})", report.reason),
        "events_count": 1,
        "start_at": at,
        "stop_at": at,
        "capacity": 0,
        "leakspeed": "0",
        "simulated": false,
        "events": [],
        "source": source,
        // Origin `crowdsec`: a decision a machine made, as CrowdSec's own agents' are.
        "decisions": [{
            "duration": format!("{left}s"),
            "origin": "crowdsec",
            "scenario": scenario,
            "scope": scope,
            "type": "ban",
            "value": value,
        }],
    }))
}

/// CrowdSec's scope and value for a network: `Ip` for one address, `Range` otherwise.
fn scope_of(target: IpNet) -> (&'static str, String) {
    if target.prefix_len() == target.max_prefix_len() {
        ("Ip", target.addr().to_string())
    } else {
        ("Range", target.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(target: &str, ttl: Option<u64>) -> Reported {
        Reported {
            target: target.parse().unwrap(),
            reason: "escalation:auth-failures".to_owned(),
            at: SystemTime::UNIX_EPOCH + Duration::from_hours(500_000),
            ttl: ttl.map(Duration::from_secs),
        }
    }

    #[test]
    fn an_alert_carries_the_time_the_ban_has_left() {
        let report = reported("192.0.2.9/32", Some(600));
        let now = report.at + Duration::from_millis(2500);
        let alert = alert(&report, now).unwrap();
        assert_eq!(alert["scenario"], "api-shield/escalation:auth-failures");
        assert_eq!(alert["source"]["scope"], "Ip");
        assert_eq!(alert["source"]["ip"], "192.0.2.9");
        assert_eq!(alert["decisions"][0]["duration"], "597s");
        assert_eq!(alert["decisions"][0]["value"], "192.0.2.9");
        assert_eq!(alert["start_at"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn a_network_is_a_range_and_an_ended_ban_is_not_reported() {
        let report = reported("2001:db8::/64", Some(60));
        let alert = alert(&report, report.at).unwrap();
        assert_eq!(alert["source"]["scope"], "Range");
        assert_eq!(alert["decisions"][0]["value"], "2001:db8::/64");
        assert!(super::alert(&report, report.at + Duration::from_mins(1)).is_none());
        assert!(super::alert(&reported("192.0.2.9/32", None), report.at).is_none());
    }
}
