//! Fleet-scoped rate limits, the link's side (the policy's side is
//! `policy/ratelimit/fleet_share.rs`): every sync, each limit's admitted counts per key go to
//! Redis in one script call per batch of keys, and each key's answer (how far ahead of now the
//! shared TAT is) raises this host's TAT for that key.
//!
//! Accuracy: a host learns what the others admitted one sync later (50 ms plus a round trip).
//! Within that time each host may admit from the budget the others are spending, so a client
//! spreading requests over N hosts can get up to (N - 1) x rate x 50 ms more than the limit at
//! once (up to (N - 1) x burst for a key new to every host); what is over is still counted in the shared TAT, which then refuses it later, so over
//! a minute the fleet admits the configured rate (plus the burst), not N times it.

use redis::aio::MultiplexedConnection;

use super::{keys, link::Link, link::LinkError};
use crate::policy::ratelimit::FleetShare;

/// Keys per script call.
const BATCH: usize = 256;

/// Sends every limit's counts since the last sync and applies the answers.
pub(super) async fn sync(link: &Link, redis: &mut MultiplexedConnection) -> Result<(), LinkError> {
    for share in FleetShare::live() {
        let counts: Vec<(String, u32)> = share.take().into_iter().collect();
        for batch in counts.chunks(BATCH) {
            let script = redis::Script::new(keys::LIMITS);
            let mut call = script.prepare_invoke();
            for (key, _) in batch {
                call.key(link.keys.limit(&share.route, key));
            }
            call.arg(share.interval_ns);
            for (_, admitted) in batch {
                call.arg(*admitted);
            }
            let answers: Vec<i64> = link
                .timed("a rate-limit sync", call.invoke_async(redis))
                .await?;
            for ((key, _), micros) in batch.iter().zip(answers) {
                let ahead = u64::try_from(micros).unwrap_or(0).saturating_mul(1000);
                share.spent_elsewhere(key, ahead);
            }
        }
    }
    Ok(())
}

/// Forgets the counts made while Redis was away (each host limited alone meanwhile).
pub(super) fn forget() {
    for share in FleetShare::live() {
        share.take();
    }
}
