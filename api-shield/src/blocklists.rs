//! Blocklist feeds: each `[[blocklists]]` table is a list of networks dropped at the NIC, under
//! its own slot of the kernel's deny table (reason `list:NAME`, packets counted per list). A
//! task per list looks at its source every `refresh` (`fetch`: a file when it changed, a URL
//! conditionally, with a size cap), reads it (`parse`: the common formats, the operator's guard
//! rails per entry, a bad line refused with its number and the rest applied) and applies what
//! changed as a diff (`DenyTable::replace`: new entries first, dropped ones last, so a source
//! listed before and after is dropped throughout).
//!
//! A source that fails changes nothing: the last good copy stays in the kernel (and, for a
//! URL, on disk for the next start). A list removed from the config lets go of its entries at
//! the next reload or start; a changed table (or changed guard rails or allow list) reads its
//! list again.
//!
//! These entries are deny rules, not bans: they have no end and are the lists' own, so they
//! sit in the deny table beside `fastpath.deny`, with the same guard rails as every ban
//! (`decisions.rs`) and one audit line per change of a list.

mod fetch;
pub mod parse;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use ipnet::IpNet;
use tokio::task::JoinHandle;

use crate::{
    config::{BlocklistConfig, Config, GuardRails},
    fastpath::DenyTable,
    telemetry::metrics,
};

/// What judging an entry needs from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rails {
    guard: GuardRails,
    allow: Vec<IpNet>,
}

/// The running lists.
pub(crate) struct Blocklists {
    table: Arc<Mutex<DenyTable>>,
    runtime_dir: PathBuf,
    rails: Rails,
    running: HashMap<String, (BlocklistConfig, JoinHandle<()>)>,
}

impl Blocklists {
    /// Starts a task per list of `config` over `table`, and lets go of the entries of lists an
    /// earlier run had that `config` no longer names.
    pub(crate) fn start(config: &Config, table: Arc<Mutex<DenyTable>>) -> Blocklists {
        let mut lists = Blocklists {
            table,
            runtime_dir: config.fastpath.runtime_dir.clone(),
            rails: rails_of(config),
            running: HashMap::new(),
        };
        lists.update(config);
        lists
    }

    /// Takes a reloaded config: new lists start, removed ones let go of their entries, and
    /// changed ones (or all, when the guard rails or the allow list changed) read their source
    /// again. Lists that did not change keep running.
    pub(crate) fn update(&mut self, config: &Config) {
        let rails = rails_of(config);
        let rails_changed = rails != self.rails;
        self.rails = rails;
        let wanted: HashMap<&str, &BlocklistConfig> = config
            .blocklists
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();
        self.running.retain(|name, (running, task)| {
            let keep = !rails_changed && wanted.get(name.as_str()) == Some(&&*running);
            if !keep {
                task.abort();
            }
            keep
        });
        self.release_unlisted(&wanted);
        for list in &config.blocklists {
            if self.running.contains_key(&list.name) {
                continue;
            }
            let task = tokio::spawn(keep_applied(
                list.clone(),
                Arc::clone(&self.table),
                self.rails.clone(),
                self.runtime_dir.clone(),
            ));
            self.running.insert(list.name.clone(), (list.clone(), task));
        }
    }

    /// Frees the slots (and entries) of lists that are no longer configured.
    fn release_unlisted(&self, wanted: &HashMap<&str, &BlocklistConfig>) {
        let mut table = self
            .table
            .lock()
            .expect("the deny table lock is never poisoned");
        let lists = match table.lists() {
            Ok(lists) => lists,
            Err(error) => {
                tracing::error!(%error, "blocklists: cannot read the list slots");
                return;
            }
        };
        for (slot, name) in lists {
            if wanted.contains_key(name.as_str()) {
                continue;
            }
            match table.release(slot) {
                Ok(done) => {
                    tracing::info!(target: "audit", list = %name, deleted = done.deleted, "blocklist removed from the config: its entries are lifted");
                    let m = &metrics().blocklists;
                    let _ = m.entries.remove_label_values(&[&name]);
                }
                Err(error) => {
                    tracing::error!(list = %name, %error, "blocklist: cannot lift its entries");
                }
            }
        }
    }

    /// Stops every list's task (their entries stay in the kernel).
    pub(crate) fn stop(&mut self) {
        for (_, (_, task)) in self.running.drain() {
            task.abort();
        }
    }
}

fn rails_of(config: &Config) -> Rails {
    Rails {
        guard: config.fastpath.guard,
        allow: config.fastpath.allow.clone(),
    }
}

/// Keeps one list applied for as long as it is configured.
async fn keep_applied(
    list: BlocklistConfig,
    table: Arc<Mutex<DenyTable>>,
    rails: Rails,
    runtime_dir: PathBuf,
) {
    let name = list.name.clone();
    let slot = match table
        .lock()
        .expect("the deny table lock is never poisoned")
        .slot_for(&name)
    {
        Ok(Some(slot)) => slot,
        Ok(None) => {
            tracing::error!(list = %name, "blocklist: no free list slot (63 at most)");
            return;
        }
        Err(error) => {
            tracing::error!(list = %name, %error, "blocklist: cannot take a list slot");
            return;
        }
    };
    let mut source = match fetch::Source::new(&list, &runtime_dir) {
        Ok(source) => source,
        Err(error) => {
            tracing::error!(list = %name, %error, "blocklist: not loaded");
            return;
        }
    };
    let applier = Applier {
        name: name.clone(),
        slot,
        table,
        rails,
    };
    if let Some(cached) = source.cached() {
        applier.apply(cached, "the last good copy").await;
    }
    let mut ticker = tokio::time::interval(list.refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let m = &metrics().blocklists;
    loop {
        ticker.tick().await;
        match source.fetch().await {
            Ok(fetch::Fetched::Unchanged) => {
                m.updates.with_label_values(&[&name, "unchanged"]).inc();
                m.last_success.with_label_values(&[&name]).set(unix_now());
                failing = false;
            }
            Ok(fetch::Fetched::Changed(text)) => {
                if applier.apply(text, "the source").await {
                    m.last_success.with_label_values(&[&name]).set(unix_now());
                    failing = false;
                }
            }
            Err(error) => {
                m.updates.with_label_values(&[&name, "failed"]).inc();
                if !failing {
                    tracing::error!(list = %name, %error, "blocklist: cannot update; the last good copy stays applied");
                }
                failing = true;
            }
        }
    }
}

/// Reads and applies one list's texts.
struct Applier {
    name: String,
    slot: u32,
    table: Arc<Mutex<DenyTable>>,
    rails: Rails,
}

impl Applier {
    /// Reads `text` and applies it as a diff; whether it was applied.
    async fn apply(&self, text: Bytes, from: &'static str) -> bool {
        let started = Instant::now();
        let (table, rails, slot) = (Arc::clone(&self.table), self.rails.clone(), self.slot);
        let work = tokio::task::spawn_blocking(move || {
            let parsed = parse::parse(&text, rails.guard, &rails.allow);
            let done = table
                .lock()
                .expect("the deny table lock is never poisoned")
                .replace(slot, &parsed.entries);
            (parsed, done)
        });
        let m = &metrics().blocklists;
        let name = self.name.as_str();
        let (parsed, done) = match work.await {
            Ok((parsed, Ok(done))) => (parsed, done),
            Ok((_, Err(error))) => {
                m.updates.with_label_values(&[name, "failed"]).inc();
                tracing::error!(list = %name, %error, "blocklist: cannot write the deny table");
                return false;
            }
            Err(_) => {
                m.updates.with_label_values(&[name, "failed"]).inc();
                tracing::error!(list = %name, "blocklist: reading the list failed unexpectedly");
                return false;
            }
        };
        let took = started.elapsed();
        for refusal in &parsed.refusals {
            tracing::warn!(list = %name, line = refusal.line, why = %refusal.why, "blocklist: line refused");
        }
        if parsed.refused > parsed.refusals.len() {
            tracing::warn!(list = %name, more = parsed.refused - parsed.refusals.len(), "blocklist: more lines refused (counted in api_shield_blocklist_refused_lines)");
        }
        if done.no_room > 0 {
            tracing::error!(list = %name, left_out = done.no_room, "blocklist: the deny table is full (fastpath.max_deny): entries left out");
        }
        tracing::info!(
            target: "audit",
            list = %name,
            from,
            entries = done.held,
            inserted = done.inserted,
            deleted = done.deleted,
            refused = parsed.refused + done.no_room,
            took_ms = took.as_millis() as u64,
            "blocklist applied at the NIC"
        );
        m.updates.with_label_values(&[name, "applied"]).inc();
        m.entries
            .with_label_values(&[name])
            .set(i64::try_from(done.held).unwrap_or(i64::MAX));
        m.refused
            .with_label_values(&[name])
            .set(i64::try_from(parsed.refused + done.no_room).unwrap_or(i64::MAX));
        m.apply_seconds
            .with_label_values(&[name])
            .set(took.as_secs_f64());
        true
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
