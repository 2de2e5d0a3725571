//! Fleet mode: several shields share their bans through Redis. A ban made on any host (an
//! operator's or escalation's, unless marked local) is stored with its maker, reason and
//! absolute end, and announced on the fleet's channel; every other host applies it to its own
//! kernel ban map, through the same guard rails as an operator's ban. Unbans likewise. A host
//! that starts or reconnects resyncs in full, so a missed message is never a missed ban, and
//! when Redis is gone every host keeps enforcing what it holds and decides alone.
//!
//! Fleet-scoped rate limits (`limits`) and escalation counted fleet-wide (`counts`) ride the
//! same link, batched every 50 ms, so no request waits on Redis.
//!
//! `keys` names what lives in Redis, `record` what is stored and said there, `connect` where
//! the link connects (the node holding the fleet's slot, in a Redis Cluster), and `link` the
//! task that talks to it.

mod connect;
mod counts;
mod keys;
mod limits;
mod link;
mod record;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::SystemTime,
};

use tokio::task::JoinHandle;

use crate::{
    config::{FleetConfig, FleetHost},
    control::protocol::FleetStatus,
    decisions::{Decisions, Outbox},
    escalate::FleetSignal,
    telemetry::metrics,
};

/// What `status` shows of the link.
#[derive(Debug)]
pub(crate) struct FleetState {
    name: String,
    host: String,
    connected: AtomicBool,
    server: Mutex<Option<String>>,
    peers: Mutex<Vec<String>>,
    last_resync: Mutex<Option<SystemTime>>,
}

impl FleetState {
    /// Records whether the link is up; whether it was.
    fn set_connected(&self, connected: bool) -> bool {
        metrics().fleet.connected.set(i64::from(connected));
        self.connected.swap(connected, Ordering::Relaxed)
    }

    fn set_server(&self, url: &str) {
        *self.server.lock().expect("never poisoned") = Some(url.to_owned());
    }

    fn set_peers(&self, mut peers: Vec<String>) {
        peers.sort();
        *self.peers.lock().expect("never poisoned") = peers;
    }

    fn resynced(&self, at: SystemTime) {
        *self.last_resync.lock().expect("never poisoned") = Some(at);
    }

    /// The report.
    pub(crate) fn status(&self) -> FleetStatus {
        FleetStatus {
            name: self.name.clone(),
            host: self.host.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            redis: self.server.lock().expect("never poisoned").clone(),
            peers: self.peers.lock().expect("never poisoned").clone(),
            last_resync: self
                .last_resync
                .lock()
                .expect("never poisoned")
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
        }
    }
}

/// A running fleet link.
#[derive(Debug)]
pub(crate) struct Fleet {
    state: Arc<FleetState>,
    task: JoinHandle<()>,
    signals: tokio::sync::mpsc::Sender<FleetSignal>,
}

impl Fleet {
    /// Starts sharing `decisions` with the fleet `config` names, as `host`.
    pub(crate) fn start(
        config: &FleetConfig,
        host: FleetHost,
        decisions: &Arc<Decisions>,
    ) -> Fleet {
        let (queue, receiver) = tokio::sync::mpsc::channel(link::QUEUE);
        let (signals, signal_receiver) = tokio::sync::mpsc::channel(link::QUEUE);
        decisions.share_with(Outbox {
            host: host.host.clone(),
            queue,
        });
        metrics().fleet.enabled.set(1);
        metrics().fleet.connected.set(0);
        let state = Arc::new(FleetState {
            name: config.name.clone(),
            host: host.host.clone(),
            connected: AtomicBool::new(false),
            server: Mutex::new(None),
            peers: Mutex::new(Vec::new()),
            last_resync: Mutex::new(None),
        });
        tracing::info!(fleet = %config.name, host = %host.host, "fleet: sharing bans through Redis");
        let task = tokio::spawn(link::run(link::Link {
            config: config.clone(),
            host: host.host,
            password: host.password,
            keys: keys::Keys::new(&config.name),
            decisions: Arc::clone(decisions),
            state: Arc::clone(&state),
            queue: receiver,
            signals: signal_receiver,
            pending: VecDeque::new(),
            epoch: None,
            attempts: 0,
            sync_warned: None,
        }));
        Fleet {
            state,
            task,
            signals,
        }
    }

    /// Where escalation hands its signals to be counted fleet-wide.
    pub(crate) fn signals(&self) -> tokio::sync::mpsc::Sender<FleetSignal> {
        self.signals.clone()
    }

    /// What `status` shows.
    pub(crate) fn status(&self) -> FleetStatus {
        self.state.status()
    }

    /// Stops the link (decisions not yet shared stay on this host).
    pub(crate) fn stop(self) {
        self.task.abort();
        metrics().fleet.connected.set(0);
    }
}
