//! Escalation: L7 signals (auth failures, rate-limit refusals, invalid requests) counted per
//! client address over a sliding window; past a rule's threshold the address is written into
//! the kernel ban map with the rule as its reason and an expiry, so its next packets die at the
//! NIC. Sources in `fastpath.allow`, `proxy.trusted_proxies` and `escalation.never_ban` are never
//! banned; `max_ban_ttl` and `max_active_bans` bound what a config mistake can do.
//!
//! The window is the two-bucket estimate Cloudflare and nginx-style limiters use: the previous
//! window's count weighted by how much of it still overlaps, plus the current count. One entry
//! per address and rule, at most `max_tracked_clients` per rule; entries whose windows have
//! passed are dropped first, and when none has, new addresses are not counted (the L7 rate
//! limits still apply to them).
//!
//! In a fleet, every signal is also handed (never waited on) to the fleet link, which counts it
//! fleet-wide with the same two-bucket estimate in Redis (`fleet/counts.rs`): a source whose
//! signals are spread across hosts, below each host's threshold, is banned everywhere once the
//! fleet's count reaches it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::{
    config::{Config, EscalationRule, EscalationSignal},
    decisions::{Decision, Decisions, Source},
    fastpath::{Clock, SystemClock},
    proxy::connection::evict::Evictions,
    refusal::Denial,
    telemetry::metrics,
};

/// The signal a refusal gives, if any. Every denial is named: a new one must be placed here.
pub(crate) fn signal_of(denial: Denial) -> Option<EscalationSignal> {
    match denial {
        Denial::Unauthenticated | Denial::InvalidToken | Denial::InvalidApiKey => {
            Some(EscalationSignal::AuthFailure)
        }
        Denial::RateLimited => Some(EscalationSignal::RateLimited),
        Denial::InvalidPath
        | Denial::BadRequest
        | Denial::HeadersTooLarge
        | Denial::UriTooLong
        | Denial::InvalidRequest
        | Denial::MalformedBody
        | Denial::SchemaViolation
        | Denial::UnsupportedMediaType
        | Denial::PayloadTooLarge => Some(EscalationSignal::InvalidRequest),
        // Not the client's abuse: routing misses, policy outcomes an honest client meets,
        // the upstream's failures, and the client's own timeouts or departures.
        Denial::NotFound
        | Denial::MethodNotAllowed
        | Denial::CorsPreflightDenied
        | Denial::InsufficientScope
        | Denial::Gone
        | Denial::UpstreamUnavailable
        | Denial::UpstreamTimeout
        | Denial::RequestTimeout
        | Denial::ClientClosedRequest => None,
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ns: u64,
    current: u32,
    previous: u32,
}

impl Window {
    /// Counts one signal at `now`; the estimate over the last `window`.
    fn count(&mut self, now: u64, window: u64) -> f64 {
        let elapsed = now.saturating_sub(self.start_ns);
        if elapsed >= 2 * window {
            *self = Window {
                start_ns: now,
                current: 0,
                previous: 0,
            };
        } else if elapsed >= window {
            *self = Window {
                start_ns: self.start_ns + window,
                current: 0,
                previous: self.current,
            };
        }
        self.current += 1;
        let into = now.saturating_sub(self.start_ns) as f64 / window as f64;
        f64::from(self.previous) * (1.0 - into).max(0.0) + f64::from(self.current)
    }

    fn stale(&self, now: u64, window: u64) -> bool {
        now.saturating_sub(self.start_ns) >= 2 * window
    }
}

/// One rule and its counts.
#[derive(Debug)]
struct Rule {
    config: EscalationRule,
    counts: Mutex<HashMap<IpAddr, Window>>,
    /// What the fleet counts it by.
    fleet: Arc<FleetRule>,
}

/// A rule as the fleet counts it.
#[derive(Debug)]
pub(crate) struct FleetRule {
    /// Its name (the reason of its bans is `escalation:<name>`).
    pub name: String,
    /// Signals within `window` that ban.
    pub threshold: u32,
    /// The sliding window.
    pub window: Duration,
    /// How long its bans last (capped by `max_ban_ttl`).
    pub ttl: Duration,
    /// `escalation.max_active_bans`.
    pub max_active: usize,
}

/// One signal, for the fleet to count.
#[derive(Debug, Clone)]
pub(crate) struct FleetSignal {
    /// The rule it counts for.
    pub rule: Arc<FleetRule>,
    /// Who gave it.
    pub client: IpAddr,
}

/// The compiled rules and what they never ban.
#[derive(Debug)]
struct Rules {
    list: Vec<Rule>,
    never: Vec<IpNet>,
    max_ttl: Duration,
    max_active: usize,
    max_tracked: usize,
}

/// The escalation engine of a daemon.
pub(crate) struct Escalator {
    rules: ArcSwap<Rules>,
    decisions: Option<Arc<Decisions>>,
    /// The fleet link's queue of signals, in a fleet.
    fleet: std::sync::OnceLock<tokio::sync::mpsc::Sender<FleetSignal>>,
    clock: Arc<dyn Clock + Send + Sync>,
}

impl std::fmt::Debug for Escalator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalator").finish_non_exhaustive()
    }
}

impl Escalator {
    /// Rules from `config`, banning through `decisions` (without them, bans are only logged).
    pub(crate) fn new(
        config: &Config,
        decisions: Option<Arc<Decisions>>,
        clock: Arc<dyn Clock + Send + Sync>,
    ) -> Escalator {
        if decisions.is_none() && !config.escalation.rules.is_empty() {
            tracing::warn!("escalation rules need the fast path to ban at the NIC; with it disabled they only log");
        }
        Escalator {
            rules: ArcSwap::from_pointee(compile(config, None)),
            decisions,
            fleet: std::sync::OnceLock::new(),
            clock,
        }
    }

    /// From now on, a ban also closes the banned client's open connections in `evictions`.
    pub(crate) fn close_connections_with(&self, evictions: Arc<Evictions>) {
        if let Some(decisions) = &self.decisions {
            decisions.close_connections_with(evictions);
        }
    }

    /// From now on, signals are also counted fleet-wide through `signals`.
    pub(crate) fn count_fleet_wide(&self, signals: tokio::sync::mpsc::Sender<FleetSignal>) {
        let _ = self.fleet.set(signals);
    }

    /// Takes the rules of a reloaded config; counts of rules that keep their name and settings
    /// carry over.
    pub(crate) fn update(&self, config: &Config) {
        let old = self.rules.load_full();
        self.rules.store(Arc::new(compile(config, Some(&old))));
    }

    /// Counts a refusal of `client` and bans it when a rule's threshold is reached.
    pub(crate) fn record(&self, client: IpAddr, denial: Denial) {
        let Some(signal) = signal_of(denial) else {
            return;
        };
        let rules = self.rules.load();
        if rules.list.is_empty() || rules.never.iter().any(|net| net.contains(&client)) {
            return;
        }
        let now = self.clock.monotonic_ns();
        for rule in rules.list.iter().filter(|r| r.config.signal == signal) {
            let window = u64::try_from(rule.config.window.as_nanos()).unwrap_or(u64::MAX);
            let reached = {
                let mut counts = rule.counts.lock().expect("never poisoned");
                if !counts.contains_key(&client) && counts.len() >= rules.max_tracked {
                    counts.retain(|_, w| !w.stale(now, window));
                    if counts.len() >= rules.max_tracked {
                        continue;
                    }
                }
                let estimate = counts
                    .entry(client)
                    .or_insert(Window {
                        start_ns: now,
                        current: 0,
                        previous: 0,
                    })
                    .count(now, window);
                let reached = estimate >= f64::from(rule.config.threshold);
                if reached {
                    counts.remove(&client);
                }
                reached
            };
            if reached {
                self.ban(client, &rule.config, &rules);
            } else if let Some(fleet) = self.fleet.get() {
                let signal = FleetSignal {
                    rule: Arc::clone(&rule.fleet),
                    client,
                };
                if fleet.try_send(signal).is_err() {
                    metrics().fleet.signals_dropped.inc();
                }
            }
        }
    }

    fn ban(&self, client: IpAddr, rule: &EscalationRule, rules: &Rules) {
        let Some(decisions) = &self.decisions else {
            tracing::warn!(target: "audit", %client, rule = %rule.name, "escalation would ban (fast path disabled)");
            return;
        };
        ban_for_rule(
            decisions,
            client,
            &rule.name,
            rule.ban.min(rules.max_ttl),
            rules.max_active,
        );
    }
}

/// Bans `client` for the rule `name` through `decisions` (shared with a fleet, never forced
/// past the guard rails), unless `max_active` bans are in force; whether it did. The audit line
/// is the decision's.
pub(crate) fn ban_for_rule(
    decisions: &Decisions,
    client: IpAddr,
    name: &str,
    ttl: Duration,
    max_active: usize,
) -> bool {
    match decisions.own_escalation_bans() {
        Ok(active) if active >= max_active => {
            tracing::error!(target: "audit", %client, rule = %name, max = max_active, "escalation ban refused: escalation.max_active_bans reached");
            return false;
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, "escalation: cannot read the ban map");
            return false;
        }
    }
    let decision = Decision {
        target: IpNet::from(client),
        ttl: Some(ttl),
        reason: format!("escalation:{name}"),
        source: Source::Escalation,
        force: false,
        local: false,
    };
    match decisions.ban(&decision) {
        Ok(_) => {
            metrics().escalation_bans.with_label_values(&[name]).inc();
            true
        }
        Err(error) => {
            tracing::error!(%client, rule = %name, %error, "escalation ban failed");
            false
        }
    }
}

fn compile(config: &Config, old: Option<&Rules>) -> Rules {
    let escalation = &config.escalation;
    let rules = escalation
        .rules
        .iter()
        .map(|rule| {
            metrics().escalation_bans.with_label_values(&[&rule.name]);
            let kept = old
                .and_then(|o| o.list.iter().find(|r| r.config == *rule))
                .map(|r| r.counts.lock().expect("never poisoned").clone())
                .unwrap_or_default();
            Rule {
                fleet: Arc::new(FleetRule {
                    name: rule.name.clone(),
                    threshold: rule.threshold,
                    window: rule.window,
                    ttl: rule.ban.min(escalation.max_ban_ttl),
                    max_active: escalation.max_active_bans,
                }),
                config: rule.clone(),
                counts: Mutex::new(kept),
            }
        })
        .collect();
    let mut never = escalation.never_ban.clone();
    never.extend(config.fastpath.allow.iter().copied());
    never.extend(config.proxy.trusted_proxies.iter().copied());
    Rules {
        list: rules,
        never,
        max_ttl: escalation.max_ban_ttl,
        max_active: escalation.max_active_bans,
        max_tracked: escalation.max_tracked_clients,
    }
}

/// The system clock, for the daemon.
pub(crate) fn system_clock() -> Arc<dyn Clock + Send + Sync> {
    Arc::new(SystemClock)
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // The estimates compared are exact in binary.
mod tests {
    use super::*;
    use crate::policy::clock::ManualClock;

    fn config(text: &str) -> Config {
        crate::config::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    const RULES: &str = r#"
[fastpath]
allow = ["10.9.0.0/16"]
[escalation]
max_tracked_clients = 4
[[escalation.rules]]
name = "auth"
signal = "auth_failure"
threshold = 3
window = "60s"
ban = "15m"
"#;

    #[test]
    fn windows_estimate_the_last_period() {
        let mut w = Window {
            start_ns: 0,
            current: 0,
            previous: 0,
        };
        let s = 1_000_000_000u64;
        assert_eq!(w.count(0, 60 * s), 1.0);
        assert_eq!(w.count(30 * s, 60 * s), 2.0);
        // Half-way into the next window, half of the previous two still count.
        assert_eq!(w.count(90 * s, 60 * s), 2.0);
        // Two windows later, everything is forgotten.
        assert_eq!(w.count(300 * s, 60 * s), 1.0);
    }

    #[test]
    fn thresholds_are_counted_per_client_and_allowed_sources_never_count() {
        let clock = Arc::new(ManualClock::new(1_800_000_000));
        let escalator = Escalator::new(&config(RULES), None, clock.clone());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed: IpAddr = "10.9.1.1".parse().unwrap();
        let count = |ip: &IpAddr| {
            escalator.rules.load().list[0]
                .counts
                .lock()
                .unwrap()
                .get(ip)
                .map(|w| w.current)
        };
        escalator.record(a, Denial::InvalidToken);
        escalator.record(a, Denial::NotFound);
        escalator.record(a, Denial::RateLimited);
        assert_eq!(count(&a), Some(1), "only auth failures count for this rule");
        escalator.record(allowed, Denial::InvalidToken);
        assert_eq!(count(&allowed), None);
        escalator.record(a, Denial::Unauthenticated);
        escalator.record(a, Denial::InvalidApiKey);
        assert_eq!(
            count(&a),
            None,
            "the third one banned it and reset its count"
        );
        // Memory stays bounded by max_tracked_clients.
        for i in 0..100u8 {
            escalator.record(IpAddr::from([198, 51, 100, i]), Denial::InvalidToken);
        }
        assert!(escalator.rules.load().list[0].counts.lock().unwrap().len() <= 4);
        // After the windows pass, stale entries make room again.
        clock.advance(Duration::from_mins(3));
        escalator.record(a, Denial::InvalidToken);
        assert_eq!(count(&a), Some(1));
    }
}
