//! The link to Redis: one task per daemon that connects (each URL in turn), subscribes to the
//! fleet's channel, publishes what this host decided while it was away, resyncs, and then
//! applies what the other hosts say, shares what this host decides and sends a heartbeat.
//!
//! Nothing else waits on it: decisions reach it through a bounded queue. Every command has
//! `fleet.timeout`; a heartbeat that misses it, or a closed connection, ends the session, and
//! the host decides alone (its kernel maps keep every ban) until a new session has resynced.
//! Subscribing before reading the stored bans means no change falls between the two: a change
//! made after the read arrives as a message, and messages replay changes in order.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use futures_util::StreamExt as _;
use ipnet::IpNet;
use redis::{aio::MultiplexedConnection, AsyncCommands as _};
use tokio::sync::mpsc;

mod resync;

use super::{
    connect, counts,
    keys::{self, Keys},
    limits,
    record::{self, BanRecord, Message, RecordError},
    FleetState,
};
use crate::{
    config::{FleetConfig, Password},
    decisions::{DecisionError, Decisions, Shared},
    escalate::FleetSignal,
    fastpath::FastpathError,
    telemetry::metrics,
};

/// How often fleet-scoped rate limits and escalation counts are sent to Redis.
const SYNC: Duration = Duration::from_millis(50);
/// How often the host says it is alive and checks Redis answers.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Heartbeats between sweeps of ended bans and reads of the peer list.
const SWEEP_EVERY: u32 = 20;
/// A peer is listed by `status` while its last heartbeat is younger than this.
const PEER_RECENT: Duration = Duration::from_secs(10);
/// Peers silent for longer are removed from the list.
const PEER_FORGOTTEN: Duration = Duration::from_hours(24);
/// Waits between connection attempts, doubling from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// One field and value of the ban hash, as bytes (checked one by one).
type RawEntry = (Vec<u8>, Vec<u8>);

/// Stored bans read per HSCAN call at a resync.
const SCAN_PAGE: usize = 1000;
/// Most decisions waiting for Redis. While it is away the queue fills and further ones stay on
/// this host (counted); decisions taken from the queue but not yet published keep at most as
/// many, giving up the oldest.
pub(super) const QUEUE: usize = 10_000;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    /// Redis answered with an error, or the connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the timeout.
    #[error("Redis did not answer {0} within fleet.timeout")]
    Timeout(&'static str),
    /// The subscription's connection closed.
    #[error("the subscription's connection closed")]
    Closed,
    /// The CA file could not be read.
    #[error("reading fleet.ca_file: {0}")]
    Ca(std::io::Error),
    /// The kernel map could not be read.
    #[error(transparent)]
    Fastpath(#[from] FastpathError),
}

impl LinkError {
    /// Whether the connection is gone (or too slow), as opposed to Redis refusing one command
    /// (a key of the wrong type or value, written by hand): only the first ends a session.
    fn ends_session(&self) -> bool {
        match self {
            LinkError::Redis(error) => {
                error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_unrecoverable_error()
                    // The fleet's slot moved to another cluster node.
                    || error.redirect_node().is_some()
            }
            _ => true,
        }
    }
}

/// The link's state between sessions.
pub(super) struct Link {
    pub config: FleetConfig,
    pub host: String,
    pub password: Option<Password>,
    pub keys: Keys,
    pub decisions: Arc<Decisions>,
    pub state: Arc<FleetState>,
    pub queue: mpsc::Receiver<Shared>,
    /// Escalation signals to count fleet-wide.
    pub signals: mpsc::Receiver<FleetSignal>,
    /// Decisions taken from the queue and not yet published.
    pub pending: VecDeque<Shared>,
    /// The epoch word last seen.
    pub epoch: Option<String>,
    /// Sessions started (picks the URL).
    pub attempts: usize,
    /// When a refused sync was last logged.
    pub sync_warned: Option<Instant>,
}

/// Runs the link until the daemon stops (the task is aborted).
pub(super) async fn run(mut link: Link) {
    let mut backoff = BACKOFF.0;
    let mut said_down = false;
    loop {
        let Err(error) = link.session().await;
        let m = &metrics().fleet;
        if link.state.set_connected(false) {
            m.fallbacks.inc();
            backoff = BACKOFF.0;
            said_down = true;
            tracing::error!(error = %error, "fleet: lost Redis; bans stay on this host and are shared when it is back");
        } else if !said_down {
            said_down = true;
            tracing::error!(error = %error, "fleet: cannot reach Redis; this host decides alone until it answers");
        } else {
            tracing::debug!(error = %error, "fleet: Redis still unreachable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

impl Link {
    /// Runs `command` with the fleet's timeout, timing its round trip.
    pub(super) async fn timed<T>(
        &self,
        what: &'static str,
        command: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LinkError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.config.timeout, command).await {
            Err(_) => return Err(LinkError::Timeout(what)),
            // The connection's own response timeout (the same `fleet.timeout`).
            Ok(Err(error)) if error.is_timeout() => return Err(LinkError::Timeout(what)),
            Ok(result) => result?,
        };
        metrics()
            .fleet
            .round_trip
            .observe(started.elapsed().as_secs_f64());
        Ok(result)
    }

    /// A rate-limit or escalation sync failed: the session ends if the connection is gone;
    /// a command Redis refused is logged (at most every 10 s) and the next sync tries again.
    fn sync_failed(&mut self, error: LinkError) -> Result<(), LinkError> {
        if error.ends_session() {
            return Err(error);
        }
        let due = self
            .sync_warned
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            self.sync_warned = Some(Instant::now());
            tracing::warn!(%error, "fleet: Redis refused a rate-limit or escalation sync");
        }
        Ok(())
    }

    /// A command connection with the fleet's timeouts.
    async fn connect(&self, client: &redis::Client) -> Result<MultiplexedConnection, LinkError> {
        let connect = self.config.connect_timeout;
        let options = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(self.config.timeout));
        tokio::time::timeout(
            connect,
            client.get_multiplexed_async_connection_with_config(&options),
        )
        .await
        .map_err(|_| LinkError::Timeout("a connection"))?
        .map_err(LinkError::from)
    }

    /// One connection's life: returns only when it is lost.
    async fn session(&mut self) -> Result<Infallible, LinkError> {
        let url = self.config.redis[self.attempts % self.config.redis.len()].clone();
        self.attempts += 1;
        let mut info = connect::info(self, &url)?;
        let mut client = connect::client(self, info.clone())?;
        let mut redis = self.connect(&client).await?;
        // In a cluster, the node that holds the fleet's slot serves everything.
        if let Some(node) = connect::slot_owner(self, &mut redis).await? {
            let owner = connect::at(&info, node);
            if owner.addr() != info.addr() {
                info = owner;
                client = connect::client(self, info.clone())?;
                redis = self.connect(&client).await?;
            }
        }
        let url = connect::describe(&info);
        let mut pubsub =
            tokio::time::timeout(self.config.connect_timeout, client.get_async_pubsub())
                .await
                .map_err(|_| LinkError::Timeout("a connection"))??;
        let channel = self.keys.channel.clone();
        self.timed("SUBSCRIBE", pubsub.subscribe(&channel)).await?;
        let mut messages = pubsub.into_on_message();
        let lost = self.epoch_changed(&mut redis).await?;
        self.flush(&mut redis).await?;
        self.resync(&mut redis, lost).await?;
        // What was counted while Redis was away stayed on this host.
        limits::forget();
        while self.signals.try_recv().is_ok() {}
        self.state.set_server(&url);
        self.state.set_connected(true);
        tracing::info!(redis = %url, redis_was_empty = lost, "fleet: connected and resynced");
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = 0u32;
        let mut sync = tokio::time::interval(SYNC);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = message.ok_or(LinkError::Closed)?;
                    match message.get_payload::<String>() {
                        Ok(text) => self.receive(&text),
                        Err(error) => refused("?", &RecordError::Shape(error.to_string())),
                    }
                }
                shared = self.queue.recv() => {
                    if let Some(shared) = shared {
                        self.pending.push_back(shared);
                        self.flush(&mut redis).await?;
                    }
                }
                _ = sync.tick() => {
                    let synced = match limits::sync(self, &mut redis).await {
                        Ok(()) => counts::sync(self, &mut redis).await,
                        Err(error) => Err(error),
                    };
                    if let Err(error) = synced {
                        self.sync_failed(error)?;
                    }
                }
                _ = heartbeat.tick() => {
                    self.heartbeat(&mut redis, beats.is_multiple_of(SWEEP_EVERY)).await?;
                    beats = beats.wrapping_add(1);
                }
            }
        }
    }

    /// Whether Redis lost the fleet's data since this host last looked (a fresh epoch word).
    async fn epoch_changed(
        &mut self,
        redis: &mut MultiplexedConnection,
    ) -> Result<bool, LinkError> {
        let fresh = format!("{:032x}", rand::random::<u128>());
        let epoch = self.keys.epoch.clone();
        let created: Option<String> = self
            .timed(
                "SET NX",
                redis::cmd("SET")
                    .arg(&epoch)
                    .arg(&fresh)
                    .arg("NX")
                    .query_async(redis),
            )
            .await?;
        let now: String = self.timed("GET", redis.get(&epoch)).await?;
        let lost = match &self.epoch {
            Some(seen) => *seen != now,
            None => created.is_some(),
        };
        self.epoch = Some(now);
        Ok(lost)
    }

    /// Publishes every decision waiting (those that ended meanwhile are dropped).
    async fn flush(&mut self, redis: &mut MultiplexedConnection) -> Result<(), LinkError> {
        while let Ok(shared) = self.queue.try_recv() {
            self.pending.push_back(shared);
        }
        while self.pending.len() > QUEUE {
            // The oldest waiting decision is given up: a ban becomes this host's only.
            if let Some(Shared::Ban { target, .. }) = self.pending.pop_front() {
                if let Err(error) = self.decisions.unshare(target, &self.host) {
                    tracing::error!(ban = %target, %error, "fleet: cannot keep a ban on this host");
                }
            }
            metrics().fleet.shared.with_label_values(&["dropped"]).inc();
        }
        while let Some(shared) = self.pending.front().cloned() {
            let now = self.decisions.clock().wall();
            let host = self.host.clone();
            match shared {
                Shared::Ban {
                    expires: Some(end), ..
                } if end <= now => {
                    metrics().fleet.shared.with_label_values(&["dropped"]).inc();
                }
                Shared::Ban {
                    target,
                    reason,
                    created,
                    expires,
                } => {
                    let record = BanRecord {
                        reason,
                        host,
                        created_ms: record::unix_ms(created),
                        expires_ms: expires.map(record::unix_ms),
                    };
                    self.publish_ban(redis, target, record).await?;
                    metrics()
                        .fleet
                        .shared
                        .with_label_values(&["published"])
                        .inc();
                }
                Shared::Unban { target } => {
                    let message = serde_json::to_string(&Message::Unban {
                        target: target.to_string(),
                        host,
                    })
                    .expect("serializable");
                    let script = redis::Script::new(keys::UNBAN);
                    let mut call = script.key(&self.keys.bans);
                    call.key(&self.keys.expiry)
                        .key(&self.keys.unbans)
                        .arg(target.to_string())
                        .arg(&self.keys.channel)
                        .arg(message);
                    let _: i64 = self.timed("UNBAN", call.invoke_async(redis)).await?;
                    metrics()
                        .fleet
                        .shared
                        .with_label_values(&["published"])
                        .inc();
                }
            }
            self.pending.pop_front();
        }
        Ok(())
    }

    async fn publish_ban(
        &self,
        redis: &mut MultiplexedConnection,
        target: IpNet,
        record: BanRecord,
    ) -> Result<(), LinkError> {
        let stored = serde_json::to_string(&record).expect("serializable");
        let end = record
            .expires_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default();
        let message = serde_json::to_string(&Message::Ban {
            target: target.to_string(),
            record,
        })
        .expect("serializable");
        let script = redis::Script::new(keys::BAN);
        let mut call = script.key(&self.keys.bans);
        call.key(&self.keys.expiry)
            .key(&self.keys.unbans)
            .arg(target.to_string())
            .arg(stored)
            .arg(end)
            .arg(&self.keys.channel)
            .arg(message);
        let _: i64 = self.timed("BAN", call.invoke_async(redis)).await?;
        Ok(())
    }

    /// A message from the channel. This host's own are applied too: both are idempotent, and a
    /// resync that read the hash just before one of this host's changes converges on it.
    fn receive(&self, text: &str) {
        match record::parse_message(text) {
            Ok(Message::Ban { target, record }) => {
                match record::parse_target(&target).and_then(|net| {
                    record.check()?;
                    Ok(net)
                }) {
                    Ok(net) => {
                        self.apply(net, &record, self.decisions.clock().wall(), true);
                    }
                    Err(error) => refused(&target, &error),
                }
            }
            Ok(Message::Unban { target, .. }) => match record::parse_target(&target) {
                Ok(net) => self.lift(net),
                Err(error) => refused(&target, &error),
            },
            Err(error) => refused("?", &error),
        }
    }

    /// Applies a checked fleet ban (with its audit line when `announce`); what came of it.
    fn apply(
        &self,
        target: IpNet,
        record: &BanRecord,
        now: SystemTime,
        announce: bool,
    ) -> &'static str {
        let outcome = if record.expired(now) {
            "expired"
        } else {
            match self.decisions.apply_fleet_ban(
                target,
                &record.reason,
                &record.host,
                record.expires(),
                announce,
            ) {
                Ok(true) => "applied",
                Ok(false) => "unchanged",
                Err(error) => {
                    refused_decision(target, &record.host, &error);
                    "refused"
                }
            }
        };
        metrics().fleet.received.with_label_values(&[outcome]).inc();
        outcome
    }

    fn lift(&self, target: IpNet) {
        match self.decisions.lift_fleet_ban(target) {
            Ok(true) => metrics()
                .fleet
                .received
                .with_label_values(&["lifted"])
                .inc(),
            Ok(false) => metrics()
                .fleet
                .received
                .with_label_values(&["unchanged"])
                .inc(),
            Err(error) => {
                tracing::error!(ban = %target, error = %error, "fleet: cannot lift a ban");
            }
        }
    }

    /// Says this host is alive (and checks Redis answers); now and then, sweeps ended bans and
    /// reads which peers are alive.
    async fn heartbeat(
        &self,
        redis: &mut MultiplexedConnection,
        sweep: bool,
    ) -> Result<(), LinkError> {
        let now = record::unix_ms(self.decisions.clock().wall());
        let _: i64 = self
            .timed("a heartbeat", redis.zadd(&self.keys.peers, &self.host, now))
            .await?;
        if !sweep {
            return Ok(());
        }
        let script = redis::Script::new(keys::SWEEP);
        let mut call = script.key(&self.keys.bans);
        call.key(&self.keys.expiry).key(&self.keys.unbans);
        let _: i64 = self.timed("SWEEP", call.invoke_async(redis)).await?;
        let recent = now.saturating_sub(PEER_RECENT.as_millis() as u64);
        let peers: Vec<String> = self
            .timed(
                "ZRANGEBYSCORE",
                redis.zrangebyscore(&self.keys.peers, recent, "+inf"),
            )
            .await?;
        let forgotten = now.saturating_sub(PEER_FORGOTTEN.as_millis() as u64);
        let _: i64 = self
            .timed(
                "ZREMRANGEBYSCORE",
                redis.zrembyscore(&self.keys.peers, "-inf", forgotten),
            )
            .await?;
        self.state.set_peers(peers);
        Ok(())
    }
}

fn refused(target: &str, error: &RecordError) {
    metrics()
        .fleet
        .received
        .with_label_values(&["refused"])
        .inc();
    tracing::warn!(target: "audit", entry = %target.chars().take(64).collect::<String>(), error = %error, "fleet: entry refused, not applied");
}

fn refused_decision(target: IpNet, origin: &str, error: &DecisionError) {
    tracing::warn!(target: "audit", ban = %target, origin, error = %error, "fleet: ban refused, not applied");
}
