//! Escalation counted fleet-wide: every sync, the signals each host's escalator handed over
//! are added to per-window counters in Redis (one pipeline, one round trip), with the same
//! two-bucket estimate the hosts use (the previous window weighted by how much of it still
//! overlaps, plus the current one; windows numbered from the Unix epoch, so every host uses the
//! same). A source whose estimate reaches a rule's threshold is banned through the decision path
//! and shared, so every host drops it; its counters are then removed.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use redis::aio::MultiplexedConnection;

use super::{link::Link, link::LinkError, record::unix_ms};
use crate::{
    escalate::{ban_for_rule, FleetRule},
    telemetry::metrics,
};

/// Counts the signals waiting and bans the sources past a threshold.
pub(super) async fn sync(
    link: &mut Link,
    redis: &mut MultiplexedConnection,
) -> Result<(), LinkError> {
    let mut batch: HashMap<(String, IpAddr), (Arc<FleetRule>, u64)> = HashMap::new();
    while let Ok(signal) = link.signals.try_recv() {
        batch
            .entry((signal.rule.name.clone(), signal.client))
            .or_insert_with(|| (Arc::clone(&signal.rule), 0))
            .1 += 1;
    }
    if batch.is_empty() {
        return Ok(());
    }
    let now_ms = unix_ms(link.decisions.clock().wall());
    let entries: Vec<_> = batch.into_iter().collect();
    let mut pipe = redis::pipe();
    let mut windows = Vec::with_capacity(entries.len());
    for ((name, client), (rule, n)) in &entries {
        let window_ms = u64::try_from(rule.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let number = now_ms / window_ms;
        let current = link.keys.count(name, number, *client);
        let previous = link.keys.count(name, number.saturating_sub(1), *client);
        pipe.incr(&current, *n)
            .pexpire(&current, i64::try_from(2 * window_ms).unwrap_or(i64::MAX))
            .ignore()
            .get(&previous);
        let into = (now_ms % window_ms) as f64 / window_ms as f64;
        windows.push((current, previous, into));
    }
    let replies: Vec<(u64, Option<u64>)> = link
        .timed("an escalation count", pipe.query_async(redis))
        .await?;
    for ((((_, client), (rule, _)), (current_key, previous_key, into)), (current, previous)) in
        entries.iter().zip(&windows).zip(replies)
    {
        let estimate = previous.unwrap_or(0) as f64 * (1.0 - into) + current as f64;
        if estimate < f64::from(rule.threshold) {
            continue;
        }
        ban(link, *client, rule);
        let _: () = link
            .timed(
                "DEL",
                redis::cmd("DEL")
                    .arg(current_key)
                    .arg(previous_key)
                    .query_async(redis),
            )
            .await?;
    }
    Ok(())
}

fn ban(link: &Link, client: IpAddr, rule: &FleetRule) {
    if ban_for_rule(
        &link.decisions,
        client,
        &rule.name,
        rule.ttl,
        rule.max_active,
    ) {
        metrics().fleet.escalation_bans.inc();
        tracing::warn!(target: "audit", %client, rule = %rule.name, "the fleet's count of this source's signals reached the rule's threshold");
    }
}
