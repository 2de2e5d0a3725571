//! The fleet's names in Redis and the scripts that change them. Every key carries the fleet's
//! name in a hash tag (`api-shield:{NAME}:...`), so a fleet's keys live on one Redis Cluster
//! node and a script may touch them together; several fleets share one Redis without meeting.
//!
//! - `...:bans`: hash, network → ban record (JSON);
//! - `...:bans:expiry`: sorted set, network → end (Unix ms), for removing ended bans;
//! - `...:unbans`: sorted set, network → when it was unbanned (Redis's clock, ms), kept a week:
//!   a host that finds its own ban missing from the hash lifts it only if it was unbanned,
//!   else publishes it (its share never reached Redis);
//! - `...:epoch`: a random word written once; another word means Redis lost the fleet's data
//!   (restarted empty), and every host republishes the bans it holds;
//! - `...:peers`: sorted set, host → last heartbeat (Unix ms);
//! - channel `...:bans`: ban and unban messages, published by the same script that writes the
//!   hash, so the order of messages is the order of changes;
//! - `...:rl:ROUTE:KEY`: a fleet-scoped rate limit's shared TAT for one client key (Redis's
//!   clock, microseconds), expiring once it has passed;
//! - `...:esc:RULE:WINDOW:ADDRESS`: an escalation rule's fleet-wide count of one source's
//!   signals in one window (numbered from the Unix epoch), expiring after two windows.

/// The names of one fleet.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub bans: String,
    pub expiry: String,
    pub epoch: String,
    pub peers: String,
    pub channel: String,
    pub unbans: String,
    prefix: String,
}

impl Keys {
    pub(super) fn new(fleet: &str) -> Keys {
        let prefix = format!("api-shield:{{{fleet}}}");
        Keys {
            bans: format!("{prefix}:bans"),
            expiry: format!("{prefix}:bans:expiry"),
            epoch: format!("{prefix}:epoch"),
            peers: format!("{prefix}:peers"),
            channel: format!("{prefix}:bans"),
            unbans: format!("{prefix}:unbans"),
            prefix,
        }
    }

    /// A fleet-scoped rate limit's key.
    pub(super) fn limit(&self, route: &str, key: &str) -> String {
        format!("{}:rl:{route}:{key}", self.prefix)
    }

    /// An escalation rule's count of `source` in window number `window`.
    pub(super) fn count(&self, rule: &str, window: u64, source: std::net::IpAddr) -> String {
        format!("{}:esc:{rule}:{window}:{source}", self.prefix)
    }
}

/// KEYS: bans, expiry, unbans. ARGV: network, record, end (Unix ms, or "" for never), channel,
/// message.
pub(super) const BAN: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// KEYS: bans, expiry, unbans. ARGV: network, channel, message. Published even when the hash
/// did not hold it: a host that missed an earlier unban may still.
pub(super) const UNBAN: &str = r"
local t = redis.call('TIME')
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000, ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
";

/// KEYS: bans, expiry, unbans. Removes up to 1000 bans ended by Redis's clock, and unbans
/// older than a week; returns how many bans.
pub(super) const SWEEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - 604800000)
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, net in ipairs(ended) do
  redis.call('HDEL', KEYS[1], net)
end
if #ended > 0 then
  redis.call('ZREM', KEYS[2], unpack(ended))
end
return #ended
";

/// KEYS: a limit's keys. ARGV: nanoseconds per request, then per key the requests admitted.
/// Advances each key's TAT (microseconds on Redis's clock) by what was admitted, from no
/// earlier than now; returns per key how far ahead of now it is (microseconds).
pub(super) const LIMITS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1]) / 1000
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or now
  -- Before now, or absurdly far ahead (written by hand: over 100 days), it starts afresh.
  if tat < now or tat > now + 8640000000000 then tat = now end
  tat = tat + tonumber(ARGV[i + 1]) * interval
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  out[i] = math.floor(tat - now)
end
return out
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_a_fleet_hashes_to_one_slot() {
        let keys = Keys::new("eu-1");
        for key in [&keys.bans, &keys.expiry, &keys.epoch, &keys.peers] {
            assert!(key.starts_with("api-shield:{eu-1}:"), "{key}");
        }
        assert_ne!(Keys::new("eu-2").bans, keys.bans);
        assert!(keys.limit("r", "ip:1").starts_with("api-shield:{eu-1}:rl:"));
        let source = "10.0.0.1".parse().unwrap();
        assert!(keys
            .count("auth", 7, source)
            .starts_with("api-shield:{eu-1}:esc:"));
    }
}
