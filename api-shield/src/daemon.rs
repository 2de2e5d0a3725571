//! The running service: the fast path and its map tasks (events, program log, ban sweep), the
//! HTTPS listeners and the admin listener. Started from a config, reloaded in place (a bad
//! config changes nothing), stopped.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::task::JoinHandle;

mod answers;

use crate::{
    blocklists::Blocklists,
    config::{self, Config, ConfigError},
    control::{self, protocol::Reloaded},
    decisions::Decisions,
    escalate::{system_clock, Escalator},
    fastpath::{self, DenyTable, Fastpath, FastpathError, PinnedMaps, SystemClock},
    fleet::Fleet,
    proxy::{
        connection::server::{ProxyError, ProxyServer},
        request::handler::Proxy,
    },
    telemetry::{admin, drops::RecentDrops, kernel::KernelCollector, metrics},
};

/// How often expired bans are removed from the map.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often attached interfaces are looked at (gone, or back). A poll of one ioctl per
/// interface is simpler than a netlink subscription and bounds the unfiltered time of a
/// returning interface to this interval.
const INTERFACE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReloadError {
    /// The new config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Its routes or policies could not be compiled.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The kernel maps could not be updated.
    #[error("updating the kernel maps")]
    Fastpath(#[from] FastpathError),
    /// The new control socket could not be bound.
    #[error(transparent)]
    Control(#[from] control::server::ControlServerError),
    /// Preparing the reload panicked (a bug); nothing changed.
    #[error("preparing the reload failed unexpectedly; nothing changed")]
    Panicked,
}

/// A reload with everything that can fail done: the config loaded and checked, its proxy
/// compiled (when the daemon runs listeners), the control socket bound at its new path (when it
/// moved). Dropping it changes nothing that runs.
struct PreparedReload {
    config: Config,
    proxy: Option<Proxy>,
    control: Option<(PathBuf, tokio::net::UnixListener)>,
}

/// Writes a config into the kernel maps: ports and lists, then the settings word.
fn write_maps(
    maps: &mut PinnedMaps,
    deny: &mut DenyTable,
    config: &config::FastpathConfig,
) -> Result<(), FastpathError> {
    fastpath::apply_lists(maps, deny, config)?;
    if crate::failpoint::hit("reload-maps") {
        return Err(FastpathError::Map {
            map: api_shield_common::maps::CONFIG,
            source: aya::sys::SyscallError {
                call: "bpf_map_update_elem",
                io_error: std::io::Error::other("fail point `reload-maps` (API_SHIELD_FAILPOINTS)"),
            }
            .into(),
        });
    }
    fastpath::apply_settings(maps, config)
}

struct State {
    /// The config in force (the last one loaded successfully).
    config: Config,
    /// The config the daemon started with: what the restart-only settings still follow.
    started_with: Config,
    fastpath: Option<Fastpath>,
    proxy: Option<ProxyServer>,
    /// The link to the fleet's Redis.
    fleet: Option<Fleet>,
    /// The blocklist feeds.
    blocklists: Option<Blocklists>,
    tasks: Vec<JoinHandle<()>>,
    /// The control socket's path and the task serving it.
    control: Option<(PathBuf, JoinHandle<()>)>,
}

/// The daemon.
pub(crate) struct Daemon {
    config_path: PathBuf,
    started: Instant,
    state: Mutex<State>,
    readiness: Arc<admin::Readiness>,
    maps: Option<Arc<Mutex<PinnedMaps>>>,
    /// The one path into the ban map (with the fast path enabled).
    decisions: Option<Arc<Decisions>>,
    drops: Arc<RecentDrops>,
    /// Where the admin listener listens.
    pub admin: Option<SocketAddr>,
    /// Itself, for the control socket's tasks (which must not keep it alive).
    this: std::sync::OnceLock<std::sync::Weak<Daemon>>,
    /// Held for the whole of a reload: one at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Daemon {
    /// Starts everything the config asks for.
    pub(crate) async fn start(config_path: PathBuf, config: Config) -> anyhow::Result<Arc<Daemon>> {
        // Before anything is touched: the pin directory's lock. A second daemon on the same
        // pinned maps and links stops here and changes nothing.
        let pin_lock = if config.fastpath.enabled {
            fastpath::privileges::check()?;
            Some(fastpath::PinLock::acquire(&config.fastpath.pin_dir)?)
        } else {
            None
        };
        if let Some(limit) = crate::rlimit::raise_open_files() {
            crate::rlimit::check_fits(config.proxy.max_connections, limit);
        }
        // Bound before the fast path starts: a socket a live daemon answers on means another
        // daemon runs, and this one must not touch its attachments.
        let control = if config.control.disabled {
            None
        } else {
            Some(control::server::bind(&config.control_socket())?)
        };
        let drops = Arc::new(RecentDrops::default());
        let mut tasks = Vec::new();
        let (fastpath, maps) = if let Some(pin_lock) = pin_lock {
            let (fastpath, maps) = start_fastpath(&config, pin_lock, &drops, &mut tasks)?;
            (Some(fastpath), maps)
        } else {
            tracing::info!("fast path disabled (fastpath.enabled = false)");
            (None, None)
        };
        let (decisions, fleet) = start_decisions(&config, maps.as_ref())?;
        let blocklists = fastpath
            .as_ref()
            .map(|f| Blocklists::start(&config, f.deny_table()));
        if let (Some(crowdsec), Some(decisions)) = (&config.crowdsec, &decisions) {
            let (key, machine) =
                config::crowdsec_secrets(&config)?.context("the crowdsec table is there")?;
            tasks.extend(
                crate::crowdsec::start(crowdsec, key, machine, decisions).context("crowdsec")?,
            );
        }
        let escalator = Arc::new(Escalator::new(&config, decisions.clone(), system_clock()));
        if let Some(fleet) = &fleet {
            escalator.count_fleet_wide(fleet.signals());
        }
        let proxy = if config.listeners.is_empty() {
            None
        } else {
            Some(ProxyServer::start(&config, Some(escalator)).await?)
        };
        let readiness = Arc::new(admin::Readiness::default());
        let admin = if config.admin.enabled {
            let bind = config.admin.bind;
            let (local, task) = admin::start(bind, Arc::clone(&readiness))
                .await
                .with_context(|| format!("admin listener: cannot listen on {bind}"))?;
            tracing::info!(addr = %local, "listening (admin: /metrics, /healthz, /readyz)");
            tasks.push(task);
            Some(local)
        } else {
            None
        };
        metrics()
            .last_reload
            .set(crate::telemetry::metrics::unix_now());
        let config_socket = config.control_socket();
        let daemon = Arc::new(Daemon {
            config_path,
            started: Instant::now(),
            state: Mutex::new(State {
                started_with: config.clone(),
                config,
                fastpath,
                proxy,
                fleet,
                blocklists,
                tasks,
                control: None,
            }),
            readiness,
            maps,
            decisions,
            drops,
            admin,
            this: std::sync::OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
        });
        let _ = daemon.this.set(Arc::downgrade(&daemon));
        if daemon.maps.is_some() {
            daemon.keep(tokio::spawn(follow_interfaces(Arc::downgrade(&daemon))));
        }
        if let Some(listener) = control {
            let task = control::server::serve(listener, Arc::downgrade(&daemon));
            let mut state = daemon.state();
            control::server::record(&state.config.fastpath.runtime_dir, &config_socket);
            state.control = Some((config_socket.clone(), task));
            drop(state);
            tracing::info!(socket = %config_socket.display(), "listening (control socket)");
        }
        daemon.readiness.set(true);
        daemon.log_ready();
        Ok(daemon)
    }

    /// Its state, locked (the lock is never held across a panic).
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the daemon lock is never poisoned")
    }

    /// Keeps a background task until the daemon stops.
    fn keep(&self, task: JoinHandle<()>) {
        self.state().tasks.push(task);
    }

    fn log_ready(&self) {
        let state = self.state();
        let mut listening: Vec<String> = state
            .proxy
            .iter()
            .flat_map(|p| p.addresses.iter())
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect();
        if let Some(admin) = self.admin {
            listening.push(format!("admin={admin}"));
        }
        let attached: Vec<String> = state
            .fastpath
            .iter()
            .flat_map(Fastpath::attachments)
            .map(|a| format!("{}:{}", a.interface, a.mode.as_str()))
            .collect();
        tracing::info!(
            attached = attached.join(","),
            listening = listening.join(","),
            dry_run = state.config.fastpath.dry_run,
            "ready"
        );
    }

    /// Reads the config file again and applies it in place; on any error the running config
    /// stays and the error says what is wrong (file, line, key). Settings that only a restart
    /// applies are named in the answer and the log. The service manager hears RELOADING, then
    /// READY with the outcome. One reload runs at a time.
    ///
    /// Prepare, then commit: reading, checking and compiling the file, and binding a moved
    /// control socket, run on the blocking pool (a large OpenAPI document or schema does not
    /// stall the runtime's workers) before anything changes. The commit writes the kernel maps
    /// first, the one step that can still fail, and puts the running config's lists and
    /// settings back if it does; then it swaps the rest in, which cannot fail.
    pub(crate) async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        crate::systemd::reloading();
        let result = self.prepare_reload().await.and_then(|p| self.commit(p));
        let outcome = if result.is_ok() { "success" } else { "failure" };
        metrics().reloads.with_label_values(&[outcome]).inc();
        let status = match &result {
            Ok(reloaded) => {
                metrics()
                    .last_reload
                    .set(crate::telemetry::metrics::unix_now());
                if reloaded.pending_restart.is_empty() {
                    tracing::info!(config = %self.config_path.display(), "config reloaded");
                    "serving (config reloaded)"
                } else {
                    tracing::warn!(
                        config = %self.config_path.display(),
                        pending_restart = reloaded.pending_restart.join(","),
                        "config reloaded; these settings take effect at the next restart"
                    );
                    "serving (config reloaded; some settings wait for a restart)"
                }
            }
            Err(error) => {
                tracing::error!(error = %crate::telemetry::error_chain(error), "config reload refused; the running config stays");
                "serving (last reload refused; see the log)"
            }
        };
        crate::systemd::ready(status);
        result
    }

    /// Everything a reload needs that can fail, made before anything changes.
    async fn prepare_reload(&self) -> Result<PreparedReload, ReloadError> {
        let path = self.config_path.clone();
        let (socket_now, with_proxy) = {
            let state = self.state();
            (
                state.control.as_ref().map(|(path, _)| path.clone()),
                state.proxy.is_some(),
            )
        };
        let prepare = move || -> Result<PreparedReload, ReloadError> {
            let config = config::load(&path)?;
            config::check_host(&config)?;
            let proxy = if with_proxy {
                Some(ProxyServer::compile(&config)?)
            } else {
                None
            };
            let new_socket = config.control_socket();
            let control = match socket_now {
                Some(now) if now != new_socket => {
                    Some((new_socket.clone(), control::server::bind(&new_socket)?))
                }
                _ => None,
            };
            Ok(PreparedReload {
                config,
                proxy,
                control,
            })
        };
        tokio::task::spawn_blocking(prepare)
            .await
            .map_err(|_| ReloadError::Panicked)?
    }

    /// Applies a prepared reload: the kernel maps (rolled back on failure), then what cannot
    /// fail.
    fn commit(&self, prepared: PreparedReload) -> Result<Reloaded, ReloadError> {
        let PreparedReload {
            config,
            proxy,
            control,
        } = prepared;
        let mut state = self.state();
        let deny = state.fastpath.as_ref().map(Fastpath::deny_table);
        if let (Some(maps), Some(deny), true) = (&self.maps, deny, config.fastpath.enabled) {
            let mut maps = maps.lock().expect("the maps lock is never poisoned");
            let mut deny = deny.lock().expect("the deny table lock is never poisoned");
            if let Err(error) = write_maps(&mut maps, &mut deny, &config.fastpath) {
                if let Err(again) =
                    fastpath::apply_config_with(&mut maps, &mut deny, &state.config.fastpath)
                {
                    tracing::error!(error = %crate::telemetry::error_chain(&again), "cannot put the running config back into the kernel maps");
                }
                if let Some((path, listener)) = control {
                    drop(listener);
                    let _ = std::fs::remove_file(path);
                }
                return Err(error.into());
            }
        }
        // From here on nothing fails.
        let pending_restart = config::pending_restart(&state.started_with, &config)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let (Some(server), Some(proxy)) = (state.proxy.as_mut(), proxy) {
            server.commit(proxy, &config);
        }
        if let Some(fastpath) = state.fastpath.as_mut() {
            fastpath.update(&config.fastpath);
        }
        if let Some(decisions) = &self.decisions {
            decisions.update(&config);
        }
        if let Some(blocklists) = state.blocklists.as_mut() {
            blocklists.update(&config);
        }
        if let (Some((new_socket, listener)), Some(this)) = (control, self.this.get()) {
            let task = control::server::serve(listener, this.clone());
            // The record stays in the directory the daemon started with (a new runtime_dir
            // waits for a restart).
            control::server::record(&state.started_with.fastpath.runtime_dir, &new_socket);
            if let Some((old, old_task)) = state.control.replace((new_socket.clone(), task)) {
                old_task.abort();
                let _ = std::fs::remove_file(&old);
                tracing::info!(from = %old.display(), to = %new_socket.display(), "control socket moved");
            }
        }
        state.config = config;
        Ok(Reloaded { pending_restart })
    }

    /// Reloads certificates whose files changed.
    pub(crate) fn check_certificates(&self) {
        let state = self.state();
        if let Some(proxy) = &state.proxy {
            proxy.reload_certificates(true);
        }
    }

    /// Stops: not ready any more, listeners stop accepting, open connections get up to
    /// `proxy.drain_timeout` to finish, then tasks end and the program detaches unless
    /// configured to stay.
    pub(crate) async fn stop(&self) {
        self.readiness.set(false);
        {
            let mut state = self.state();
            if let Some((path, task)) = state.control.take() {
                task.abort();
                let _ = std::fs::remove_file(path);
                control::server::forget(&state.started_with.fastpath.runtime_dir);
            }
        }
        let (proxy, drain_timeout) = {
            let mut state = self.state();
            (state.proxy.take(), state.config.proxy.drain_timeout)
        };
        if let Some(proxy) = proxy {
            proxy.stop(drain_timeout).await;
        }
        let mut state = self.state();
        if let Some(fleet) = state.fleet.take() {
            fleet.stop();
        }
        if let Some(mut blocklists) = state.blocklists.take() {
            blocklists.stop();
        }
        for task in state.tasks.drain(..) {
            task.abort();
        }
        if let Some(fastpath) = state.fastpath.take() {
            fastpath.stop();
        }
    }
}

/// Starts the fast path with its map tasks (drop events, the program's log, the ban sweep);
/// the fast path and its maps.
fn start_fastpath(
    config: &Config,
    pin_lock: fastpath::PinLock,
    drops: &Arc<RecentDrops>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(Fastpath, Option<Arc<Mutex<PinnedMaps>>>)> {
    let lists: Vec<&str> = config.blocklists.iter().map(|l| l.name.as_str()).collect();
    let mut fastpath = Fastpath::start(&config.fastpath, &lists, pin_lock)?;
    if let Some(events) = fastpath.take_events() {
        let drops = Arc::clone(drops);
        let names = fastpath::ListNames::open(&fastpath::layout_dir(&config.fastpath.pin_dir))?;
        tasks.push(tokio::spawn(async move {
            let name = |slot| names.name(slot);
            if let Err(error) = fastpath::log_events(events, name, |e| drops.record(e)).await {
                tracing::error!(%error, "drop events unavailable");
            }
        }));
    }
    if let Some(logger) = fastpath.take_logger() {
        tasks.push(tokio::spawn(async move {
            if let Err(error) = fastpath::forward_program_log(logger).await {
                tracing::error!(%error, "program log unavailable");
            }
        }));
    }
    let maps = fastpath.take_maps().map(|opened| {
        let shared = Arc::new(Mutex::new(opened));
        tasks.push(tokio::spawn(sweep_bans(Arc::clone(&shared))));
        register_kernel_metrics(&shared);
        shared
    });
    Ok((fastpath, maps))
}

/// The decision path into the ban map (with the fast path enabled), and the link sharing it
/// with the fleet (with a `[fleet]` table).
fn start_decisions(
    config: &Config,
    maps: Option<&Arc<Mutex<PinnedMaps>>>,
) -> anyhow::Result<(Option<Arc<Decisions>>, Option<Fleet>)> {
    let Some(maps) = maps else {
        return Ok((None, None));
    };
    let decisions = Arc::new(Decisions::new(config, Arc::clone(maps), system_clock()));
    let fleet = match &config.fleet {
        Some(fleet) => {
            let host = config::fleet_host(config)?.context("the fleet table is there")?;
            Some(Fleet::start(fleet, host, &decisions))
        }
        None => None,
    };
    Ok((Some(decisions), fleet))
}

fn register_kernel_metrics(maps: &Arc<Mutex<PinnedMaps>>) {
    let collector = KernelCollector::new(Arc::clone(maps));
    if let Err(error) = metrics().registry.register(Box::new(collector)) {
        tracing::warn!(%error, "kernel counters not exported");
    }
}

async fn follow_interfaces(daemon: std::sync::Weak<Daemon>) {
    let mut ticker = tokio::time::interval(INTERFACE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(daemon) = daemon.upgrade() else {
            return;
        };
        let mut state = daemon.state();
        if let Some(fastpath) = state.fastpath.as_mut() {
            fastpath.follow_interfaces();
        }
    }
}

async fn sweep_bans(maps: Arc<Mutex<PinnedMaps>>) {
    let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        ticker.tick().await;
        let swept = maps
            .lock()
            .expect("the maps lock is never poisoned")
            .sweep_expired_bans(&SystemClock);
        match swept {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "expired bans removed"),
            Err(error) => tracing::warn!(%error, "ban sweep failed"),
        }
    }
}
