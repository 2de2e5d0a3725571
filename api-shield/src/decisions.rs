//! Decision sources: the one path into the kernel's ban map. Operators (the CLI through the
//! control socket), escalation and the fleet ban and unban here, through the same guard rails
//! (no network broader than `fastpath.guard` unless an operator forces it, none the allow list
//! covers), with provenance kept in the map (the fleet host that made a ban) and one audit line
//! per decision. A ban made here closes the source's open connections, and one meant for the
//! fleet is handed to the fleet's link, which never makes the caller wait.

mod escalation_tally;

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use self::escalation_tally::EscalationTally;
use crate::{
    config::{Config, GuardError, GuardRails},
    fastpath::{BanEntry, BanRequest, Clock, FastpathError, GuardedBan, PinnedMaps},
    proxy::connection::evict::Evictions,
};

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// An operator, through the control socket.
    Operator,
    /// An escalation rule.
    Escalation,
    /// Another host of the fleet.
    Fleet,
    /// A CrowdSec Local API (the bouncer).
    CrowdSec,
}

impl Source {
    /// Who, as the audit line says it.
    fn by(self) -> &'static str {
        match self {
            Source::Operator => "an operator",
            Source::Escalation => "escalation",
            Source::Fleet => "the fleet",
            Source::CrowdSec => "CrowdSec",
        }
    }

    /// The origin a feed's bans carry in the map (`feed:NAME`: no fleet host name holds a
    /// `:`); `None` for the sources whose bans are this host's own or the fleet's.
    pub(crate) fn feed_origin(self) -> Option<&'static str> {
        match self {
            Source::CrowdSec => Some("feed:crowdsec"),
            Source::Operator | Source::Escalation | Source::Fleet => None,
        }
    }
}

/// A ban to make.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// Address or network (no host bits).
    pub target: IpNet,
    /// How long; `None` until unbanned.
    pub ttl: Option<Duration>,
    /// Why (no control characters).
    pub reason: String,
    /// Who decided.
    pub source: Source,
    /// Past the breadth guard rail (operators only).
    pub force: bool,
    /// Only on this host, even in a fleet.
    pub local: bool,
}

/// A ban or unban for the fleet to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shared {
    /// A ban, with its wall-clock end (`None`: never).
    Ban {
        /// Address or network.
        target: IpNet,
        /// Why.
        reason: String,
        /// When it was made.
        created: SystemTime,
        /// When it ends.
        expires: Option<SystemTime>,
    },
    /// An unban.
    Unban {
        /// Address or network.
        target: IpNet,
    },
}

/// An escalation ban for the CrowdSec reporter.
#[derive(Debug, Clone)]
pub(crate) struct Reported {
    /// Address or network.
    pub target: IpNet,
    /// The rule (`escalation:NAME`).
    pub reason: String,
    /// When it was made.
    pub at: SystemTime,
    /// How long (`None`: until unbanned).
    pub ttl: Option<Duration>,
}

/// Where bans for the fleet go: the fleet link's queue, and this host's name in the fleet.
#[derive(Debug)]
pub(crate) struct Outbox {
    /// This host's name in the fleet.
    pub host: String,
    /// The link's queue (bounded; full means dropped and counted, never a wait).
    pub queue: tokio::sync::mpsc::Sender<Shared>,
}

/// Why a decision was not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecisionError {
    /// Past a guard rail.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The map refused it.
    #[error(transparent)]
    Fastpath(#[from] FastpathError),
    /// The reason holds control characters.
    #[error("the reason must be printable text")]
    Reason,
    /// A fleet ban lasting longer than `fleet.max_ban_ttl`, or without an end.
    #[error("it lasts longer than fleet.max_ban_ttl ({}s), or has no end", max.as_secs())]
    TooLong {
        /// The limit.
        max: Duration,
    },
}

/// What the guard rails need from the config.
#[derive(Debug)]
struct Rails {
    guard: GuardRails,
    allow: Vec<IpNet>,
    max_fleet_ttl: Duration,
}

impl Rails {
    fn of(config: &Config) -> Rails {
        Rails {
            guard: config.fastpath.guard,
            allow: config.fastpath.allow.clone(),
            max_fleet_ttl: config
                .fleet
                .as_ref()
                .map_or(Duration::MAX, |f| f.max_ban_ttl),
        }
    }
}

/// The decision path of a daemon.
pub(crate) struct Decisions {
    maps: Arc<Mutex<PinnedMaps>>,
    rails: ArcSwap<Rails>,
    evictions: OnceLock<Arc<Evictions>>,
    outbox: OnceLock<Outbox>,
    /// Where escalation bans are reported to CrowdSec (`[crowdsec] report = true`).
    reports: OnceLock<tokio::sync::mpsc::Sender<Reported>>,
    /// This host's escalation bans in force, counted without a map read per ban.
    escalation: Arc<EscalationTally>,
    clock: Arc<dyn Clock + Send + Sync>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions").finish_non_exhaustive()
    }
}

impl Decisions {
    /// Decisions written into `maps`, with the guard rails of `config`.
    pub(crate) fn new(
        config: &Config,
        maps: Arc<Mutex<PinnedMaps>>,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Decisions {
        Decisions {
            maps,
            rails: ArcSwap::from_pointee(Rails::of(config)),
            evictions: OnceLock::new(),
            outbox: OnceLock::new(),
            reports: OnceLock::new(),
            escalation: Arc::default(),
            clock,
        }
    }

    /// Takes the guard rails of a reloaded config.
    pub(crate) fn update(&self, config: &Config) {
        self.rails.store(Arc::new(Rails::of(config)));
    }

    /// From now on, a ban also closes the banned client's open connections in `evictions`.
    pub(crate) fn close_connections_with(&self, evictions: Arc<Evictions>) {
        let _ = self.evictions.set(evictions);
    }

    /// From now on, escalation bans are also handed to `reports` (the CrowdSec reporter; a
    /// full queue drops the report, counted, never a wait).
    pub(crate) fn report_with(&self, reports: tokio::sync::mpsc::Sender<Reported>) {
        let _ = self.reports.set(reports);
    }

    /// From now on, bans and unbans not marked local are shared through `outbox`.
    pub(crate) fn share_with(&self, outbox: Outbox) {
        let _ = self.outbox.set(outbox);
    }

    /// The clock decisions are made by.
    pub(crate) fn clock(&self) -> &(dyn Clock + Send + Sync) {
        &*self.clock
    }

    fn maps(&self) -> MutexGuard<'_, PinnedMaps> {
        self.maps.lock().expect("the maps lock is never poisoned")
    }

    /// Bans in force.
    pub(crate) fn active(&self) -> Result<Vec<BanEntry>, FastpathError> {
        self.maps().ban_entries(&*self.clock)
    }

    /// This host's name in the fleet, if it is in one.
    fn own_host(&self) -> Option<&str> {
        self.outbox.get().map(|o| o.host.as_str())
    }

    /// Makes a ban of this host's (an operator's or escalation's), shares it with the fleet
    /// unless it is local, and closes what the source has open.
    pub(crate) fn ban(&self, decision: &Decision) -> Result<GuardedBan, DecisionError> {
        if decision.reason.chars().any(char::is_control) {
            return Err(DecisionError::Reason);
        }
        // Shared only with room in the link's queue: a ban marked as the fleet's that never
        // reaches Redis would be lifted by the next resync. A permanent ban stays on this host
        // (the fleet refuses bans without an end, as it refuses those past max_ban_ttl).
        let mut outbox = self.outbox.get().filter(|_| !decision.local);
        if outbox.is_some() && decision.ttl.is_none() {
            tracing::warn!(ban = %decision.target, "a permanent ban stays on this host: give it a TTL to share it with the fleet");
            outbox = None;
        }
        let permit = match outbox.map(|o| o.queue.try_reserve()) {
            Some(Ok(permit)) => Some(permit),
            Some(Err(_)) => {
                crate::telemetry::metrics()
                    .fleet
                    .shared
                    .with_label_values(&["dropped"])
                    .inc();
                tracing::error!(ban = %decision.target, "fleet: the share queue is full; this ban stays on this host");
                outbox = None;
                None
            }
            None => None,
        };
        let request = BanRequest {
            target: decision.target,
            ttl: decision.ttl,
            reason: decision.reason.clone(),
            origin: outbox.map(|o| o.host.clone()),
        };
        let rails = self.rails.load();
        let made = self.maps().ban_guarded(
            &request,
            &rails.guard,
            &rails.allow,
            decision.force,
            &*self.clock,
        )?;
        self.evict(decision.target);
        audit_ban(&made, decision.source, decision.force);
        if decision.source == Source::Escalation {
            self.escalation.ban_made();
        }
        if let (Source::Escalation, Some(reports)) = (decision.source, self.reports.get()) {
            let report = Reported {
                target: decision.target,
                reason: decision.reason.clone(),
                at: self.clock.wall(),
                ttl: decision.ttl,
            };
            if reports.try_send(report).is_err() {
                crate::telemetry::metrics()
                    .crowdsec
                    .reports
                    .with_label_values(&["dropped"])
                    .inc();
            }
        }
        if let Some(permit) = permit {
            let now = self.clock.wall();
            permit.send(Shared::Ban {
                target: decision.target,
                reason: decision.reason.clone(),
                created: now,
                expires: decision.ttl.map(|ttl| now + ttl),
            });
        }
        Ok(made)
    }

    /// Lifts this host's ban of exactly `target`, and the fleet's unless `local`.
    pub(crate) fn unban(
        &self,
        target: IpNet,
        source: Source,
        local: bool,
    ) -> Result<(), DecisionError> {
        let outbox = self.outbox.get().filter(|_| !local);
        let lifted = self.maps().unban(&target);
        match lifted {
            // Not banned here, but the fleet may still hold it (made while this host was away).
            Err(FastpathError::NoSuchBan { .. }) if outbox.is_some() => {}
            Err(error) => return Err(error.into()),
            Ok(()) => {}
        }
        tracing::warn!(target: "audit", ban = %target, fleet = outbox.is_some(), "ban lifted by {}", source.by());
        if let Some(outbox) = outbox {
            share(outbox, Shared::Unban { target });
        }
        Ok(())
    }

    /// Applies a ban another host of the fleet made: through the guard rails (never forced),
    /// no longer than `fleet.max_ban_ttl`, written with its origin, with an audit line when
    /// `announce` (a resync, which replays decisions already made, sums them up instead).
    /// `Ok(false)` when this host already holds the same ban (nothing written).
    pub(crate) fn apply_fleet_ban(
        &self,
        target: IpNet,
        reason: &str,
        origin: &str,
        expires: Option<SystemTime>,
        announce: bool,
    ) -> Result<bool, DecisionError> {
        if reason.chars().any(char::is_control) {
            return Err(DecisionError::Reason);
        }
        let rails = self.rails.load();
        let now = self.clock.wall();
        let ttl = expires.map(|at| at.duration_since(now).unwrap_or_default());
        if ttl.is_none_or(|ttl| ttl > rails.max_fleet_ttl) {
            return Err(DecisionError::TooLong {
                max: rails.max_fleet_ttl,
            });
        }
        let maps = self.maps();
        match maps.ban_entry(&target, &*self.clock)? {
            // This host's own ban (an operator's `--local`, or made while the queue was full)
            // or another source's (CrowdSec) stays as it is.
            Some(held) if !held.is_fleet() => return Ok(false),
            // The same ban (its reason as stored: cut to leave room for the origin).
            Some(held)
                if held.origin.as_deref() == Some(origin)
                    && reason.starts_with(held.reason.as_str())
                    && same_end(held.expires, expires) =>
            {
                return Ok(false)
            }
            _ => {}
        }
        let request = BanRequest {
            target,
            ttl,
            reason: reason.to_owned(),
            origin: Some(origin.to_owned()),
        };
        self.write_from(maps, &request, &rails, Source::Fleet, announce)
    }

    /// Lifts a fleet ban of `target` (a ban of this host only stays). `Ok(false)` when there
    /// was none.
    pub(crate) fn lift_fleet_ban(&self, target: IpNet) -> Result<bool, DecisionError> {
        self.lift_if(target, Source::Fleet, BanEntry::is_fleet)
    }

    /// Writes a ban another source made (the fleet, a feed) through the guard rails, never
    /// forced; closes what the source has open; an audit line when `announce`. `Ok(true)`.
    fn write_from(
        &self,
        mut maps: MutexGuard<'_, PinnedMaps>,
        request: &BanRequest,
        rails: &Rails,
        source: Source,
        announce: bool,
    ) -> Result<bool, DecisionError> {
        let made = maps.ban_guarded(request, &rails.guard, &rails.allow, false, &*self.clock)?;
        drop(maps);
        self.evict(request.target);
        if announce {
            audit_ban(&made, source, false);
        }
        Ok(true)
    }

    /// Lifts the ban of exactly `target` if `held` says it is `source`'s to lift, with an
    /// audit line. `Ok(false)` when there was none such.
    fn lift_if(
        &self,
        target: IpNet,
        source: Source,
        held: impl FnOnce(&BanEntry) -> bool,
    ) -> Result<bool, DecisionError> {
        let mut maps = self.maps();
        if !maps
            .ban_entry(&target, &*self.clock)?
            .is_some_and(|b| held(&b))
        {
            return Ok(false);
        }
        match maps.unban(&target) {
            Ok(()) | Err(FastpathError::NoSuchBan { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        drop(maps);
        tracing::warn!(target: "audit", ban = %target, "ban lifted by {}", source.by());
        Ok(true)
    }

    /// Applies a ban a decision feed holds (CrowdSec): through the guard rails (never forced),
    /// ending at `expires`, written with the feed's origin, with an audit line when `announce`.
    /// A ban of another origin that lasts as long or longer stays (the longer ban wins; a
    /// shorter one is replaced). `Ok(false)` when nothing was written.
    pub(crate) fn apply_feed_ban(
        &self,
        source: Source,
        target: IpNet,
        reason: &str,
        expires: SystemTime,
        announce: bool,
    ) -> Result<bool, DecisionError> {
        let origin = source.feed_origin().expect("a decision feed");
        if reason.chars().any(char::is_control) {
            return Err(DecisionError::Reason);
        }
        let rails = self.rails.load();
        let Ok(ttl) = expires.duration_since(self.clock.wall()) else {
            return Ok(false);
        };
        let maps = self.maps();
        if let Some(held) = maps.ban_entry(&target, &*self.clock)? {
            let ours = held.origin.as_deref() == Some(origin);
            if ours
                && reason.starts_with(held.reason.as_str())
                && same_end(held.expires, Some(expires))
            {
                return Ok(false);
            }
            // Another origin's ban as long as this one, or ending within the second before (a
            // copy of it reported to CrowdSec and pulled back), stays.
            if !ours
                && held
                    .expires
                    .is_none_or(|end| end + Duration::from_secs(1) >= expires)
            {
                return Ok(false);
            }
        }
        let request = BanRequest {
            target,
            ttl: Some(ttl.max(Duration::from_secs(1))),
            reason: reason.to_owned(),
            origin: Some(origin.to_owned()),
        };
        self.write_from(maps, &request, &rails, source, announce)
    }

    /// Lifts the ban of `target` that `source` (a feed) made; a ban of any other origin stays.
    /// `Ok(false)` when there was none.
    pub(crate) fn lift_feed_ban(
        &self,
        source: Source,
        target: IpNet,
    ) -> Result<bool, DecisionError> {
        let origin = source.feed_origin().expect("a decision feed");
        self.lift_if(target, source, |b| b.origin.as_deref() == Some(origin))
    }

    /// Bans in force that `source` (a feed) made.
    pub(crate) fn feed_bans(&self, source: Source) -> Result<Vec<BanEntry>, FastpathError> {
        let origin = source.feed_origin();
        Ok(self
            .active()?
            .into_iter()
            .filter(|b| b.origin.as_deref() == origin && origin.is_some())
            .collect())
    }

    /// Makes this host's fleet ban of `target` a ban of this host only (its share never
    /// reached Redis, so a resync must not take it for one lifted elsewhere).
    pub(crate) fn unshare(&self, target: IpNet, host: &str) -> Result<(), DecisionError> {
        let mut maps = self.maps();
        let Some(held) = maps.ban_entry(&target, &*self.clock)? else {
            return Ok(());
        };
        if held.origin.as_deref() != Some(host) {
            return Ok(());
        }
        let now = self.clock.wall();
        let request = BanRequest {
            target,
            ttl: held.expires.map(|end| {
                end.duration_since(now)
                    .unwrap_or_default()
                    .max(Duration::from_secs(1))
            }),
            reason: held.reason,
            origin: None,
        };
        maps.ban(&request, &*self.clock)?;
        Ok(())
    }

    fn evict(&self, target: IpNet) {
        if let Some(evictions) = self.evictions.get() {
            evictions.evict(target);
        }
    }
}

/// The audit line of a ban made.
fn audit_ban(made: &GuardedBan, source: Source, force: bool) {
    tracing::warn!(
        target: "audit",
        ban = %made.ban.target,
        reason = %made.ban.reason,
        origin = made.ban.origin.as_deref().unwrap_or("local"),
        expires = made.ban.expires.as_deref().unwrap_or("never"),
        force,
        "source banned at the NIC by {}",
        source.by()
    );
}

/// Hands an unban to the fleet's link; a full queue drops it (counted), never waits.
fn share(outbox: &Outbox, shared: Shared) {
    if outbox.queue.try_send(shared).is_err() {
        crate::telemetry::metrics()
            .fleet
            .shared
            .with_label_values(&["dropped"])
            .inc();
        tracing::error!("fleet: the share queue is full; this unban is not shared (the fleet's ban comes back here at the next resync)");
    }
}

/// Whether two ends are the same to the second (the kernel keeps monotonic time, the fleet
/// wall-clock milliseconds: a round trip between them moves an end by less than that).
fn same_end(a: Option<SystemTime>, b: Option<SystemTime>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let gap = a.duration_since(b).or_else(|_| b.duration_since(a));
            gap.is_ok_and(|gap| gap < Duration::from_secs(1))
        }
        _ => false,
    }
}
