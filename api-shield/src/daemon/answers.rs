//! The daemon's answers to the control socket: [`ControlHandler`] for [`Daemon`], and the
//! reports it builds (status, stats, top, bans) from its state and the kernel maps.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use super::{Daemon, State};
use crate::{
    config,
    control::{
        protocol::{
            Answer, Failure, Listening, Reloaded, Request, RouteRequests, StatsReport,
            StatusReport, TopReport,
        },
        server::ControlHandler,
    },
    decisions::{Decision, Decisions, Source},
    fastpath::{self, Fastpath, InterfaceStatus, PinnedMaps, SystemClock},
    fleet::Fleet,
    telemetry::{error_chain, metrics},
};

/// Most sources `top` lists.
const TOP_SOURCES: usize = 20;

impl ControlHandler for Daemon {
    async fn answer(&self, request: Request) -> Result<Answer, Failure> {
        let refused = |error: anyhow::Error| Failure::refused(error_chain(error.as_ref()));
        match request {
            Request::Status => Ok(Answer::Status(Box::new(self.status()))),
            Request::Reload => self
                .reload()
                .await
                .map(Answer::Reloaded)
                .map_err(|error| Failure::refused(error_chain(&error))),
            Request::Top => Ok(Answer::Top(self.top())),
            Request::Ban {
                target,
                ttl_secs,
                reason,
                force,
                local,
            } => self
                .ban(
                    &target,
                    ttl_secs.map(Duration::from_secs),
                    &reason,
                    force,
                    local,
                )
                .map(Answer::Banned)
                .map_err(refused),
            Request::Unban { target, local } => self
                .unban(&target, local)
                .map(|target| Answer::Unbanned { target })
                .map_err(refused),
            Request::Bans => self
                .locked_maps()
                .and_then(|maps| Ok(maps.bans(&SystemClock)?))
                .map(|bans| Answer::Bans { bans })
                .map_err(refused),
            Request::Stats => self.stats().map(Answer::Stats).map_err(refused),
            Request::PendingRestart { config } => self
                .pending_restart_for(&config)
                .map(|pending_restart| Answer::PendingRestart(Reloaded { pending_restart }))
                .map_err(refused),
        }
    }
}

impl Daemon {
    /// What `api-shield status` shows.
    fn status(&self) -> StatusReport {
        let (active_bans, counters) = match &self.maps {
            Some(maps) => {
                let maps = lock(maps);
                (
                    maps.bans(&SystemClock).map(|b| b.len()).ok(),
                    maps.stats().map(|s| s.counters).unwrap_or_default(),
                )
            }
            None => (None, Vec::new()),
        };
        let state = self.state();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            config: self.config_path.clone(),
            interfaces: interfaces(&state),
            dry_run: state.config.fastpath.dry_run,
            listening: state
                .proxy
                .iter()
                .flat_map(|p| p.addresses.iter())
                .map(|(name, addr)| Listening {
                    name: name.clone(),
                    addr: addr.to_string(),
                })
                .collect(),
            admin: self.admin.map(|a| a.to_string()),
            routes: state.config.routes.iter().map(|r| r.name.clone()).collect(),
            active_bans,
            counters,
            pending_restart: owned(config::pending_restart(&state.started_with, &state.config)),
            fleet: state.fleet.as_ref().map(Fleet::status),
        }
    }

    /// Counters and attachments, as `api-shield stats` shows them.
    fn stats(&self) -> anyhow::Result<StatsReport> {
        let (active_bans, counters, lists) = {
            let maps = self.locked_maps()?;
            (
                maps.bans(&SystemClock)?.len(),
                maps.stats()?.counters,
                maps.list_stats()?,
            )
        };
        let state = self.state();
        Ok(StatsReport {
            daemon_running: true,
            interfaces: interfaces(&state),
            dry_run: state.config.fastpath.dry_run,
            active_bans,
            counters,
            lists,
        })
    }

    /// What `api-shield top` shows: the sources being dropped, and requests per route so far.
    fn top(&self) -> TopReport {
        let mut routes: BTreeMap<String, u64> = BTreeMap::new();
        for family in metrics().registry.gather() {
            if family.name() != "api_shield_requests_total" {
                continue;
            }
            for metric in family.get_metric() {
                let route = metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "route")
                    .map_or("none", |l| l.value());
                *routes.entry(route.to_owned()).or_default() +=
                    metric.get_counter().get_value() as u64;
            }
        }
        TopReport {
            drops: self.drops.top(TOP_SOURCES),
            routes: routes
                .into_iter()
                .map(|(route, requests)| RouteRequests { route, requests })
                .collect(),
        }
    }

    /// The restart-only keys that differ between the running daemon and the file at `path`
    /// (for `check-config` against a running daemon).
    fn pending_restart_for(&self, path: &std::path::Path) -> anyhow::Result<Vec<String>> {
        let config = config::load(path)?;
        Ok(owned(config::pending_restart(
            &self.state().started_with,
            &config,
        )))
    }

    fn locked_maps(&self) -> anyhow::Result<MutexGuard<'_, PinnedMaps>> {
        use anyhow::Context as _;
        let maps = self
            .maps
            .as_ref()
            .context("the fast path is disabled in this daemon's config")?;
        Ok(lock(maps))
    }

    fn decisions(&self) -> anyhow::Result<&Decisions> {
        use anyhow::Context as _;
        self.decisions
            .as_deref()
            .context("the fast path is disabled in this daemon's config")
    }

    /// Bans a target, through the guard rails (shared with the fleet unless `local`), and
    /// closes what it has open.
    fn ban(
        &self,
        target: &str,
        ttl: Option<Duration>,
        reason: &str,
        force: bool,
        local: bool,
    ) -> anyhow::Result<fastpath::GuardedBan> {
        let decision = Decision {
            target: fastpath::parse_target(target)?,
            ttl,
            reason: reason.to_owned(),
            source: Source::Operator,
            force,
            local,
        };
        Ok(self.decisions()?.ban(&decision)?)
    }

    /// Lifts a ban (the fleet's too unless `local`); the network lifted.
    fn unban(&self, target: &str, local: bool) -> anyhow::Result<String> {
        let target = fastpath::parse_target(target)?;
        self.decisions()?.unban(target, Source::Operator, local)?;
        Ok(target.to_string())
    }
}

/// Where the program is attached, as `status` and `stats` both show it.
fn interfaces(state: &State) -> Vec<InterfaceStatus> {
    state
        .fastpath
        .iter()
        .flat_map(Fastpath::attachments)
        .map(|a| InterfaceStatus {
            name: a.interface.clone(),
            mode: a.state().to_owned(),
        })
        .collect()
}

fn lock(maps: &Mutex<PinnedMaps>) -> MutexGuard<'_, PinnedMaps> {
    maps.lock().expect("the maps lock is never poisoned")
}

fn owned(keys: Vec<&str>) -> Vec<String> {
    keys.into_iter().map(str::to_owned).collect()
}
