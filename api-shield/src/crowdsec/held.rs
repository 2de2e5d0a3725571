//! The decisions the bouncer holds, by network: a network may carry several CrowdSec decisions
//! (two scenarios, a manual ban on top of an alert's), and its ban in the kernel lasts as long
//! as the longest of them. A deleted decision shortens or lifts the ban only when no other
//! holds it; a ban of another origin (an operator's, the fleet's) is never lifted here.

use std::{collections::HashMap, net::IpAddr, time::SystemTime};

use ipnet::IpNet;

use super::{go_duration, lapi::LapiDecision, lapi::StreamAnswer};
use crate::{
    decisions::{Decisions, Source},
    telemetry::metrics,
};

/// One decision's end and the reason its ban carries.
#[derive(Debug, Clone)]
struct Held {
    end: SystemTime,
    reason: String,
}

/// What one pull changed, for the log.
#[derive(Debug, Default)]
pub(super) struct Outcomes {
    pub applied: u64,
    pub unchanged: u64,
    pub lifted: u64,
    pub refused: u64,
    pub ignored: u64,
}

impl Outcomes {
    fn count(&mut self, outcome: &'static str) {
        metrics()
            .crowdsec
            .decisions
            .with_label_values(&[outcome])
            .inc();
        match outcome {
            "applied" => self.applied += 1,
            "unchanged" => self.unchanged += 1,
            "lifted" => self.lifted += 1,
            "refused" => self.refused += 1,
            _ => self.ignored += 1,
        }
    }
}

/// The decisions in force, by network and LAPI id.
#[derive(Debug, Default)]
pub(super) struct Decided {
    by_target: HashMap<IpNet, HashMap<i64, Held>>,
}

impl Decided {
    /// Networks held.
    pub(super) fn len(&self) -> usize {
        self.by_target.len()
    }

    /// Applies one pull: deletions first, then new decisions of the configured types.
    /// `announce`: an audit line per ban (a startup pull sums them up in one line instead).
    pub(super) fn apply(
        &mut self,
        answer: StreamAnswer,
        decisions: &Decisions,
        types: &[String],
        announce: bool,
    ) -> Outcomes {
        let mut outcomes = Outcomes::default();
        for decision in answer.deleted.unwrap_or_default() {
            let Ok(target) = target_of(&decision) else {
                continue;
            };
            let Some(ids) = self.by_target.get_mut(&target) else {
                continue;
            };
            if ids.remove(&decision.id).is_none() {
                continue;
            }
            if ids.is_empty() {
                self.by_target.remove(&target);
                match decisions.lift_feed_ban(Source::CrowdSec, target) {
                    Ok(true) => outcomes.count("lifted"),
                    // Already ended in the kernel, or replaced by a ban of another origin.
                    Ok(false) => outcomes.count("unchanged"),
                    Err(error) => {
                        tracing::error!(ban = %target, %error, "crowdsec: cannot lift a ban");
                    }
                }
            } else {
                // Another decision still holds it: its ban lasts as long as the longest left.
                let outcome = self.enforce(target, decisions, announce);
                outcomes.count(outcome);
            }
        }
        let now = decisions.clock().wall();
        for decision in answer.new.unwrap_or_default() {
            if !types.iter().any(|t| t.eq_ignore_ascii_case(&decision.kind)) {
                outcomes.count("ignored");
                continue;
            }
            if !matches!(decision.scope.to_ascii_lowercase().as_str(), "ip" | "range") {
                outcomes.count("ignored");
                continue;
            }
            let target = match target_of(&decision) {
                Ok(target) => target,
                Err(error) => {
                    refused(&decision.value, &error);
                    outcomes.count("refused");
                    continue;
                }
            };
            let left = match go_duration::parse(&decision.duration) {
                Ok(Some(left)) if !left.is_zero() => left,
                // Already over.
                Ok(_) => {
                    outcomes.count("ignored");
                    continue;
                }
                Err(error) => {
                    refused(&decision.value, &error);
                    outcomes.count("refused");
                    continue;
                }
            };
            let reason: String = format!("crowdsec:{}", decision.scenario)
                .chars()
                .filter(|c| !c.is_control())
                .collect();
            self.by_target.entry(target).or_default().insert(
                decision.id,
                Held {
                    end: now + left,
                    reason,
                },
            );
            let outcome = self.enforce(target, decisions, announce);
            if outcome == "refused" {
                self.by_target.remove(&target);
            }
            outcomes.count(outcome);
        }
        outcomes
    }

    /// Writes `target`'s ban as its longest decision says.
    fn enforce(&self, target: IpNet, decisions: &Decisions, announce: bool) -> &'static str {
        let Some(longest) = self
            .by_target
            .get(&target)
            .and_then(|ids| ids.values().max_by_key(|h| h.end))
        else {
            return "ignored";
        };
        match decisions.apply_feed_ban(
            Source::CrowdSec,
            target,
            &longest.reason,
            longest.end,
            announce,
        ) {
            Ok(true) => "applied",
            Ok(false) => "unchanged",
            Err(error) => {
                refused(&target.to_string(), &error.to_string());
                "refused"
            }
        }
    }

    /// After a startup pull: lifts the CrowdSec bans the kernel still holds (from before a
    /// restart) that the LAPI no longer has. Their number.
    pub(super) fn lift_the_rest(&self, decisions: &Decisions) -> usize {
        let held = match decisions.feed_bans(Source::CrowdSec) {
            Ok(held) => held,
            Err(error) => {
                tracing::error!(%error, "crowdsec: cannot read the ban map");
                return 0;
            }
        };
        held.into_iter()
            .filter(|ban| !self.by_target.contains_key(&ban.target))
            .filter(|ban| {
                decisions
                    .lift_feed_ban(Source::CrowdSec, ban.target)
                    .is_ok_and(|lifted| lifted)
            })
            .count()
    }

    /// Forgets decisions that are over (the kernel ends their bans on its own).
    pub(super) fn prune(&mut self, now: SystemTime) {
        self.by_target.retain(|_, ids| {
            ids.retain(|_, held| held.end > now);
            !ids.is_empty()
        });
    }
}

/// The network a decision names: an `Ip` is one address, a `Range` a network.
fn target_of(decision: &LapiDecision) -> Result<IpNet, String> {
    match decision.scope.to_ascii_lowercase().as_str() {
        "ip" => decision
            .value
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{}` is not an address", decision.value)),
        "range" => decision
            .value
            .parse::<IpNet>()
            .map_err(|_| format!("`{}` is not a network", decision.value)),
        other => Err(format!("scope `{other}` is not applied")),
    }
}

fn refused(value: &str, error: &str) {
    tracing::warn!(
        target: "audit",
        entry = %value.chars().take(64).collect::<String>(),
        error,
        "crowdsec: decision refused, not applied"
    );
}
