//! Bans: written by the CLI (and later by escalation) into the `BANS` trie with a monotonic
//! expiry, listed with wall-clock times, swept when expired.

use std::time::{Duration, SystemTime};

use api_shield_common::{values::BAN_REASON_LEN, BanValue};
use aya::maps::MapError;
use ipnet::IpNet;
use serde::Serialize;

use crate::config::GuardRails;

use super::{
    addr::{key_net, target_key},
    clock::{unix_ms, Clock},
    FastpathError, PinnedMaps,
};

/// A ban to make.
#[derive(Debug, Clone)]
pub struct BanRequest {
    /// Address or network.
    pub target: IpNet,
    /// How long; `None` bans until unbanned.
    pub ttl: Option<Duration>,
    /// Why (kept up to 48 bytes with the origin).
    pub reason: String,
    /// The fleet host that made it, for a ban shared with a fleet, or the decision source
    /// (`feed:NAME`) it came from; `None` for this host's own.
    pub origin: Option<String>,
}

/// A ban as the CLI shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Ban {
    /// Address or network.
    pub target: String,
    /// Why.
    pub reason: String,
    /// The fleet host that made it; absent for a ban of this host only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// When it ends (RFC 3339, UTC), `None` for never.
    pub expires: Option<String>,
    /// Seconds left, `None` for never.
    pub remaining_secs: Option<u64>,
}

/// A ban in force, as the daemon compares it with other decision sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanEntry {
    /// Address or network.
    pub target: IpNet,
    /// Why.
    pub reason: String,
    /// The fleet host that made it, if it is a fleet ban.
    pub origin: Option<String>,
    /// When it ends; `None` for never.
    pub expires: Option<SystemTime>,
}

impl BanEntry {
    /// Whether another fleet host (or this one, for the fleet) made it: its origin is a host
    /// name, not a decision source such as `feed:crowdsec`.
    pub fn is_fleet(&self) -> bool {
        self.origin.as_deref().is_some_and(is_fleet_origin)
    }
}

/// Whether a ban's origin names a fleet host: host names hold no `:`, the origins of other
/// decision sources (`feed:NAME`) do.
fn is_fleet_origin(origin: &str) -> bool {
    !origin.contains(':')
}

/// A ban made through the guard rails, with what it leaves alone.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GuardedBan {
    /// The ban.
    #[serde(flatten)]
    pub ban: Ban,
    /// Allow-list entries inside the banned network: those sources still pass.
    #[serde(default)]
    pub still_allowed: Vec<IpNet>,
}

impl PinnedMaps {
    /// The allow list as the kernel holds it.
    pub fn allow_list(&self) -> Result<Vec<IpNet>, FastpathError> {
        self.allow
            .keys()
            .map(|key| key.map(|key| key_net(&key)))
            .collect::<Result<_, _>>()
            .map_err(FastpathError::map(api_shield_common::maps::ALLOW))
    }

    /// Bans through the guard rails: a network broader than `rails` allows is refused unless
    /// `force` (an operator's explicit choice; escalation never forces), and one the allow list
    /// covers entirely is refused as ineffective. The allow list is the kernel's and
    /// `configured_allow` (what the config says, for when no daemon has written it yet).
    pub fn ban_guarded(
        &mut self,
        request: &BanRequest,
        rails: &GuardRails,
        configured_allow: &[IpNet],
        force: bool,
        clock: &(impl Clock + ?Sized),
    ) -> Result<GuardedBan, FastpathError> {
        if !force {
            rails.check_breadth(&request.target)?;
        }
        let mut allow = self.allow_list()?;
        for net in configured_allow {
            if !allow.contains(net) {
                allow.push(*net);
            }
        }
        GuardRails::check_allow(&request.target, &allow)?;
        let ban = self.ban(request, clock)?;
        Ok(GuardedBan {
            ban,
            still_allowed: GuardRails::allowed_within(&request.target, &allow),
        })
    }

    /// Bans a source or network (replacing any ban of the same network), with no guard rails:
    /// callers that take requests from outside use [`PinnedMaps::ban_guarded`].
    pub fn ban(
        &mut self,
        request: &BanRequest,
        clock: &(impl Clock + ?Sized),
    ) -> Result<Ban, FastpathError> {
        let now_mono = clock.monotonic_ns();
        let expires_ns = match request.ttl {
            Some(ttl) => now_mono
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
                .max(1),
            None => 0,
        };
        let key = target_key(&request.target);
        let value = BanValue {
            expires_ns,
            created_unix_ms: unix_ms(clock.wall()),
            last_event_ns: 0,
            prefix_len: key.prefix_len(),
            _pad: 0,
            addr: key.data(),
            reason: reason_bytes(&request.reason, request.origin.as_deref()),
        };
        if let Err(source) = self.bans.insert(&key, value, 0) {
            return Err(match &source {
                MapError::SyscallError(e)
                    if matches!(e.io_error.raw_os_error(), Some(libc::ENOSPC | libc::E2BIG)) =>
                {
                    // Full: what it holds is its size (fastpath.max_bans when it was created).
                    FastpathError::BansFull {
                        max: u32::try_from(self.bans.keys().count()).unwrap_or(u32::MAX),
                    }
                }
                _ => FastpathError::Map {
                    map: api_shield_common::maps::BANS,
                    source,
                },
            });
        }
        self.bump_rules_generation()?;
        Ok(describe(&request.target, &value, now_mono, clock))
    }

    /// The ban of exactly this address or network, if one is in force: one lookup, whatever
    /// the map holds (the trie answers the longest match, which is this ban only when its
    /// own key is the target's).
    pub fn ban_entry(
        &self,
        target: &IpNet,
        clock: &(impl Clock + ?Sized),
    ) -> Result<Option<BanEntry>, FastpathError> {
        let key = target_key(target);
        let value = match self.bans.get(&key, 0) {
            Ok(value) => value,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(None)
            }
            Err(source) => {
                return Err(FastpathError::Map {
                    map: api_shield_common::maps::BANS,
                    source,
                })
            }
        };
        if value.prefix_len != key.prefix_len()
            || value.addr != key.data()
            || is_expired(&value, clock.monotonic_ns())
        {
            return Ok(None);
        }
        let (reason, origin) = reason_of(&value);
        Ok(Some(BanEntry {
            target: *target,
            reason,
            origin,
            expires: (value.expires_ns != 0).then(|| clock.wall_of(value.expires_ns)),
        }))
    }

    /// Lifts the ban of exactly this address or network.
    pub fn unban(&mut self, target: &IpNet) -> Result<(), FastpathError> {
        let key = target_key(target);
        match self.bans.remove(&key) {
            Ok(()) => self.bump_rules_generation(),
            Err(MapError::KeyNotFound) => Err(FastpathError::NoSuchBan {
                target: target.to_string(),
            }),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Err(FastpathError::NoSuchBan {
                    target: target.to_string(),
                })
            }
            Err(source) => Err(FastpathError::Map {
                map: api_shield_common::maps::BANS,
                source,
            }),
        }
    }

    /// Bans in force, soonest to expire first (permanent ones last).
    pub fn bans(&self, clock: &(impl Clock + ?Sized)) -> Result<Vec<Ban>, FastpathError> {
        let now_mono = clock.monotonic_ns();
        let mut bans = Vec::new();
        for entry in &self.bans {
            let (key, value) = entry.map_err(FastpathError::map(api_shield_common::maps::BANS))?;
            if is_expired(&value, now_mono) {
                continue;
            }
            bans.push((
                value.expires_ns,
                describe(&key_net(&key), &value, now_mono, clock),
            ));
        }
        bans.sort_by_key(|(expires, ban)| {
            (
                if *expires == 0 { u64::MAX } else { *expires },
                ban.target.clone(),
            )
        });
        Ok(bans.into_iter().map(|(_, ban)| ban).collect())
    }

    /// Bans in force as entries: network, reason, origin and wall-clock end (`None`: never).
    pub fn ban_entries(
        &self,
        clock: &(impl Clock + ?Sized),
    ) -> Result<Vec<BanEntry>, FastpathError> {
        let now_mono = clock.monotonic_ns();
        let mut entries = Vec::new();
        for entry in &self.bans {
            let (key, value) = entry.map_err(FastpathError::map(api_shield_common::maps::BANS))?;
            if is_expired(&value, now_mono) {
                continue;
            }
            let (reason, origin) = reason_of(&value);
            entries.push(BanEntry {
                target: key_net(&key),
                reason,
                origin,
                expires: (value.expires_ns != 0).then(|| clock.wall_of(value.expires_ns)),
            });
        }
        Ok(entries)
    }

    /// Removes expired bans from the map; returns how many.
    pub fn sweep_expired_bans(
        &mut self,
        clock: &(impl Clock + ?Sized),
    ) -> Result<usize, FastpathError> {
        let now_mono = clock.monotonic_ns();
        let expired: Vec<_> = self
            .bans
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, value)| is_expired(value, now_mono))
            .map(|(key, _)| key)
            .collect();
        let mut removed = 0;
        for key in &expired {
            if self.bans.remove(key).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_expired(value: &BanValue, now_mono: u64) -> bool {
    value.expires_ns != 0 && value.expires_ns <= now_mono
}

/// Separates a ban's reason from its fleet origin in the map's reason bytes (a control
/// character, which no reason may hold).
const ORIGIN_SEPARATOR: u8 = 0x1f;

/// The map's reason bytes: the reason, cut on a character boundary to leave room for the
/// origin (at most [`crate::config::MAX_HOST_LEN`] bytes) after a separator.
fn reason_bytes(reason: &str, origin: Option<&str>) -> [u8; BAN_REASON_LEN] {
    let mut out = [0u8; BAN_REASON_LEN];
    let origin = origin.map(|o| &o.as_bytes()[..o.len().min(crate::config::MAX_HOST_LEN)]);
    let room = BAN_REASON_LEN - origin.map_or(0, |o| o.len() + 1);
    let mut end = reason.len().min(room);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&reason.as_bytes()[..end]);
    if let Some(origin) = origin {
        out[end] = ORIGIN_SEPARATOR;
        out[end + 1..end + 1 + origin.len()].copy_from_slice(origin);
    }
    out
}

/// The reason and origin a map value holds.
fn reason_of(value: &BanValue) -> (String, Option<String>) {
    let len = value
        .reason
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(BAN_REASON_LEN);
    let text = &value.reason[..len];
    match text.iter().position(|b| *b == ORIGIN_SEPARATOR) {
        Some(at) => (
            String::from_utf8_lossy(&text[..at]).into_owned(),
            Some(String::from_utf8_lossy(&text[at + 1..]).into_owned()),
        ),
        None => (String::from_utf8_lossy(text).into_owned(), None),
    }
}

fn describe(target: &IpNet, value: &BanValue, now_mono: u64, clock: &(impl Clock + ?Sized)) -> Ban {
    let (reason, origin) = reason_of(value);
    let created = SystemTime::UNIX_EPOCH + Duration::from_millis(value.created_unix_ms);
    let (expires, remaining_secs) = if value.expires_ns == 0 {
        (None, None)
    } else {
        let at = clock.wall_of(value.expires_ns);
        (
            Some(humantime::format_rfc3339_seconds(at).to_string()),
            Some(
                value
                    .expires_ns
                    .saturating_sub(now_mono)
                    .div_ceil(1_000_000_000),
            ),
        )
    };
    Ban {
        target: target.to_string(),
        reason,
        origin,
        created: humantime::format_rfc3339_seconds(created).to_string(),
        expires,
        remaining_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(40);
        let bytes = reason_bytes(&long, None);
        let len = bytes.iter().position(|b| *b == 0).unwrap_or(BAN_REASON_LEN);
        assert!(std::str::from_utf8(&bytes[..len]).is_ok());
        assert_eq!(len, 48);
        assert_eq!(&reason_bytes("x", None)[..2], b"x\0");
    }

    #[test]
    fn a_fleet_origin_is_kept_whole_beside_its_reason() {
        let mut value = BanValue {
            expires_ns: 0,
            created_unix_ms: 0,
            last_event_ns: 0,
            prefix_len: 128,
            _pad: 0,
            addr: [0; 16],
            reason: reason_bytes(&"r".repeat(60), Some("host-b")),
        };
        let (reason, origin) = reason_of(&value);
        assert_eq!(origin.as_deref(), Some("host-b"));
        assert_eq!(reason, "r".repeat(48 - 7));
        value.reason = reason_bytes("escalation:auth", None);
        assert_eq!(reason_of(&value), ("escalation:auth".to_owned(), None));
        value.reason = reason_bytes("manual", Some(&"h".repeat(30)));
        assert_eq!(
            reason_of(&value).1.unwrap().len(),
            crate::config::MAX_HOST_LEN
        );
    }

    #[test]
    fn expiry_is_in_monotonic_time() {
        let mut value = BanValue {
            expires_ns: 100,
            created_unix_ms: 0,
            last_event_ns: 0,
            prefix_len: 128,
            _pad: 0,
            addr: [0; 16],
            reason: [0; BAN_REASON_LEN],
        };
        assert!(!is_expired(&value, 99));
        assert!(is_expired(&value, 100));
        value.expires_ns = 0;
        assert!(!is_expired(&value, u64::MAX));
    }
}
