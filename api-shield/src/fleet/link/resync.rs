//! A full resync of the fleet's bans (at each session's start): every ban stored in Redis,
//! read in HSCAN pages, applied here, and the fleet bans held here that Redis lacks either
//! lifted (unbanned while this host was away) or published again (Redis lost its data, or
//! this host's own share never reached it).

use std::collections::{HashMap, HashSet};

use redis::{aio::MultiplexedConnection, AsyncCommands as _};

use super::{refused, Link, LinkError, RawEntry, SCAN_PAGE};
use crate::{
    fleet::record::{self, BanRecord, RecordError},
    telemetry::metrics,
};

impl Link {
    /// Makes this host's fleet bans what Redis holds: every ban stored there is applied, and
    /// a fleet ban held here that Redis lacks was lifted while this host was away, unless
    /// Redis lost its data (`lost`): then it is published again, with its maker and end.
    pub(super) async fn resync(
        &mut self,
        redis: &mut MultiplexedConnection,
        lost: bool,
    ) -> Result<(), LinkError> {
        let stored = self.stored_bans(redis).await?;
        let now = self.decisions.clock().wall();
        let mut in_redis = HashSet::new();
        // A resync replays decisions already made: one summary line, not an audit line per
        // ban (refusals are still logged one by one).
        let mut outcomes: HashMap<&'static str, usize> = HashMap::new();
        for (target, text) in &stored {
            match record::parse_target(target)
                .and_then(|net| Ok((net, record::parse_record(text)?)))
            {
                Ok((net, record)) => {
                    in_redis.insert(net);
                    *outcomes
                        .entry(self.apply(net, &record, now, false))
                        .or_default() += 1;
                }
                Err(error) => {
                    refused(target, &error);
                    *outcomes.entry("refused").or_default() += 1;
                }
            }
        }
        let held = self.decisions.active()?;
        for ban in held.into_iter().filter(|b| !in_redis.contains(&b.target)) {
            // Only fleet bans: this host's own and other sources' (CrowdSec) are not Redis's.
            if !ban.is_fleet() {
                continue;
            }
            let Some(origin) = ban.origin else { continue };
            // This host's own ban, not unbanned anywhere: its share never reached Redis
            // (a queue lost in a restart); publish it.
            let own_and_kept = origin == self.host && {
                let unbanned: Option<f64> = self
                    .timed(
                        "ZSCORE",
                        redis.zscore(&self.keys.unbans, ban.target.to_string()),
                    )
                    .await?;
                unbanned.is_none()
            };
            if lost || own_and_kept {
                let record = BanRecord {
                    reason: ban.reason,
                    host: origin,
                    created_ms: record::unix_ms(now),
                    expires_ms: ban.expires.map(record::unix_ms),
                };
                self.publish_ban(redis, ban.target, record).await?;
                metrics()
                    .fleet
                    .shared
                    .with_label_values(&["published"])
                    .inc();
            } else {
                self.lift(ban.target);
                *outcomes.entry("lifted").or_default() += 1;
            }
        }
        let count = |outcome| outcomes.get(outcome).copied().unwrap_or(0);
        tracing::info!(
            stored = stored.len(),
            applied = count("applied"),
            unchanged = count("unchanged"),
            refused = count("refused"),
            expired = count("expired"),
            lifted = count("lifted"),
            "fleet: bans resynced"
        );
        metrics().fleet.resyncs.inc();
        self.state.resynced(now);
        Ok(())
    }

    /// Every stored ban, read in pieces (HSCAN) so that no one command outlasts
    /// `fleet.timeout` however many bans the fleet holds.
    async fn stored_bans(
        &self,
        redis: &mut MultiplexedConnection,
    ) -> Result<HashMap<String, String>, LinkError> {
        let mut stored = HashMap::new();
        let mut cursor = "0".to_owned();
        loop {
            let (next, page): (String, Vec<RawEntry>) = self
                .timed(
                    "HSCAN",
                    redis::cmd("HSCAN")
                        .arg(&self.keys.bans)
                        .arg(&cursor)
                        .arg("COUNT")
                        .arg(SCAN_PAGE)
                        .query_async(redis),
                )
                .await?;
            for (field, value) in page {
                match (String::from_utf8(field), String::from_utf8(value)) {
                    (Ok(field), Ok(value)) => {
                        stored.insert(field, value);
                    }
                    (field, _) => refused(
                        field.as_deref().unwrap_or("?"),
                        &RecordError::Shape("not UTF-8".to_owned()),
                    ),
                }
            }
            if next == "0" {
                return Ok(stored);
            }
            cursor = next;
        }
    }
}
