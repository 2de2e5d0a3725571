//! The fleet's names in Redis and the scripts that change them. Every key carries the fleet's
//! name in a hash tag (`api-shield:{NAME}:...`), so a fleet's keys live on one Redis Cluster
//! node and a script may touch them together; several fleets share one Redis without meeting.
//!
//! - `...:bans`: hash, network → ban record (JSON);
//! - `...:bans:expiry`: sorted set, network → end (Unix ms), for removing ended bans;
//! - `...:epoch`: a random word written once; another word means Redis lost the fleet's data
//!   (restarted empty), and every host republishes the bans it holds;
//! - `...:peers`: sorted set, host → last heartbeat (Unix ms);
//! - channel `...:bans`: ban and unban messages, published by the same script that writes the
//!   hash, so the order of messages is the order of changes.

/// The names of one fleet.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub bans: String,
    pub expiry: String,
    pub epoch: String,
    pub peers: String,
    pub channel: String,
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
        }
    }
}

/// KEYS: bans, expiry. ARGV: network, record, end (Unix ms, or "" for never), channel, message.
pub(super) const BAN: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// KEYS: bans, expiry. ARGV: network, channel, message. Published even when the hash did not
/// hold it: a host that missed an earlier unban may still.
pub(super) const UNBAN: &str = r"
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return n
";

/// KEYS: bans, expiry. ARGV: now (Unix ms). Removes up to 1000 ended bans; returns how many.
pub(super) const SWEEP: &str = r"
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, net in ipairs(ended) do
  redis.call('HDEL', KEYS[1], net)
end
if #ended > 0 then
  redis.call('ZREM', KEYS[2], unpack(ended))
end
return #ended
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
    }
}
