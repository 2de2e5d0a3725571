//! The CrowdSec bouncer: decisions of a CrowdSec Local API (LAPI) dropped at the NIC. Every
//! `crowdsec.poll_interval` (1 s by default, where CrowdSec's own bouncers wait 10 s) it pulls
//! the LAPI's decision stream: in full at start, then what changed. Bans on `Ip` and `Range`
//! scopes go through the decision path (`decisions.rs`: the operator's guard rails, never
//! forced) with their remaining time and `crowdsec:<scenario>` as reason, under the origin
//! `feed:crowdsec`; deleted decisions lift them. The bans are this host's: a fleet runs a
//! bouncer on every host, as CrowdSec intends, rather than sharing them through Redis.
//!
//! A LAPI that is down or restarting lifts nothing: the bans applied keep their end in the
//! kernel, which ends them on time, and pulls resume with what changed meanwhile. A daemon
//! that restarts pulls in full again and lifts the CrowdSec bans its map still holds that the
//! LAPI no longer has.
//!
//! With `report = true`, escalation bans made here are also pushed to the LAPI as alerts
//! (`report`), so the operator's other CrowdSec bouncers enforce them too.
//!
//! `lapi` talks to the LAPI, `held` keeps the decisions by network, `report` reports, and
//! `go_duration` reads the durations the LAPI writes.

mod go_duration;
mod held;
mod lapi;
mod report;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{
    config::{CrowdsecConfig, Password},
    decisions::Decisions,
    telemetry::metrics,
};

pub(crate) use lapi::PullError;

/// Starts the bouncer: a task pulling `config`'s LAPI with `key` into `decisions`, and with
/// `report = true` one reporting escalation bans as the machine whose password is given.
pub(crate) fn start(
    config: &CrowdsecConfig,
    key: Password,
    machine_password: Option<Password>,
    decisions: &Arc<Decisions>,
) -> Result<Vec<JoinHandle<()>>, PullError> {
    let lapi = lapi::Lapi::new(config, key)?;
    metrics().crowdsec.enabled.set(1);
    let (interval, types) = (config.poll_interval, config.types.clone());
    tracing::info!(lapi = %config.lapi_url, every = ?interval, report = config.report.is_some(), "crowdsec: bouncer started");
    let mut tasks = Vec::new();
    if let (Some(report), Some(password)) = (&config.report, machine_password) {
        let (queue, reports) = tokio::sync::mpsc::channel(report::QUEUE);
        decisions.report_with(queue);
        let machine = report::Machine {
            id: report.machine_id.clone(),
            password,
        };
        tasks.push(tokio::spawn(report::report_forever(
            lapi.clone(),
            machine,
            reports,
        )));
    }
    tasks.push(tokio::spawn(pull_forever(
        lapi,
        interval,
        types,
        Arc::clone(decisions),
    )));
    Ok(tasks)
}

async fn pull_forever(
    lapi: lapi::Lapi,
    interval: std::time::Duration,
    types: Vec<String>,
    decisions: Arc<Decisions>,
) {
    let mut decided = held::Decided::default();
    let mut started = false;
    let mut reachable: Option<bool> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let startup = !started;
        match lapi.pull(startup).await {
            Ok(answer) => {
                let now = decisions.clock().wall();
                let outcomes = decided.apply(answer, &decisions, &types, !startup);
                let mut stale = 0;
                if startup {
                    stale = decided.lift_the_rest(&decisions);
                    started = true;
                }
                decided.prune(now);
                let cs = &metrics().crowdsec;
                cs.pulls.with_label_values(&["ok"]).inc();
                cs.connected.set(1);
                cs.last_pull.set(
                    now.duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                );
                cs.bans
                    .set(i64::try_from(decided.len()).unwrap_or(i64::MAX));
                if startup || reachable != Some(true) {
                    tracing::info!(
                        startup,
                        applied = outcomes.applied,
                        unchanged = outcomes.unchanged,
                        lifted = outcomes.lifted + stale as u64,
                        refused = outcomes.refused,
                        ignored = outcomes.ignored,
                        held = decided.len(),
                        "crowdsec: decisions pulled"
                    );
                }
                reachable = Some(true);
            }
            Err(error) => {
                let cs = &metrics().crowdsec;
                cs.pulls.with_label_values(&["error"]).inc();
                cs.connected.set(0);
                if reachable != Some(false) {
                    tracing::error!(%error, "crowdsec: cannot pull decisions; the bans applied stay until they end");
                }
                reachable = Some(false);
            }
        }
    }
}
