//! Blocklist feeds: each `[[blocklists]]` table is a list of networks dropped at the NIC, under
//! its own slot of the kernel's deny table (reason `list:NAME`, packets counted per list). A
//! task per list looks at its source every `refresh` (`fetch`: a file when it changed, a URL
//! conditionally, with a size cap), reads it (`parse`: the common formats, the operator's guard
//! rails per entry, a bad line refused with its number and the rest applied) and applies what
//! changed as a diff (`DenyTable::replace`: new entries first, dropped ones last, so a source
//! listed before and after is dropped throughout).
//!
//! A source that fails changes nothing: the last good copy stays in the kernel (and, for a
//! URL, on disk for the next start). So does a text of which not one line could be read (an
//! error page). A version that could not be applied in full is read again at the next look.
//! A list removed from the config lets go of its entries at the next reload or start; a
//! changed table (or changed guard rails or allow list) reads its list again. Work of a
//! removed or changed list still under way is cancelled under the table's lock, so it never
//! writes after the list was let go of.
//!
//! These entries are deny rules, not bans: they have no end and are the lists' own, so they
//! sit in the deny table beside `fastpath.deny`, with the same guard rails as every ban
//! (`decisions.rs`) and one audit line per change of a list.

mod fetch;
pub mod parse;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
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

/// One list's task, and the flag that tells its work still under way to stop.
struct Running {
    config: BlocklistConfig,
    task: JoinHandle<()>,
    cancelled: Arc<AtomicBool>,
}

impl Running {
    /// Stops the task; a read or write already on the blocking pool checks the flag under the
    /// table's lock and writes nothing once it is set.
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

/// The running lists.
pub(crate) struct Blocklists {
    table: Arc<Mutex<DenyTable>>,
    runtime_dir: PathBuf,
    rails: Rails,
    running: HashMap<String, Running>,
}

impl Blocklists {
    /// Starts a task per list of `config` over `table` (whose slots of lists `config` does not
    /// name were freed when the fast path started).
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
    /// again. Lists that did not change keep running; one whose task ended starts again.
    pub(crate) fn update(&mut self, config: &Config) {
        let rails = rails_of(config);
        let rails_changed = rails != self.rails;
        self.rails = rails;
        let wanted: HashMap<&str, &BlocklistConfig> = config
            .blocklists
            .iter()
            .map(|l| (l.name.as_str(), l))
            .collect();
        self.running.retain(|name, running| {
            let keep = !rails_changed
                && !running.task.is_finished()
                && wanted.get(name.as_str()) == Some(&&running.config);
            if !keep {
                running.cancel();
            }
            keep
        });
        let configured: Vec<String> = wanted.keys().map(|n| (*n).to_owned()).collect();
        let table = Arc::clone(&self.table);
        // Off the runtime's workers: a release of a large list holds the table for a while.
        tokio::task::spawn_blocking(move || release_unlisted(&table, &configured));
        for list in &config.blocklists {
            if self.running.contains_key(&list.name) {
                continue;
            }
            let cancelled = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(keep_applied(
                list.clone(),
                Arc::clone(&self.table),
                self.rails.clone(),
                Arc::clone(&cancelled),
                self.runtime_dir.clone(),
            ));
            self.running.insert(
                list.name.clone(),
                Running {
                    config: list.clone(),
                    task,
                    cancelled,
                },
            );
        }
    }

    /// Stops every list's task (their entries stay in the kernel).
    pub(crate) fn stop(&mut self) {
        for (_, running) in self.running.drain() {
            running.cancel();
        }
    }
}

/// Frees the slots (and entries) of lists that are no longer configured.
fn release_unlisted(table: &Mutex<DenyTable>, configured: &[String]) {
    let configured: Vec<&str> = configured.iter().map(String::as_str).collect();
    let released = table
        .lock()
        .expect("the deny table lock is never poisoned")
        .release_unlisted(&configured);
    match released {
        Ok(names) => {
            for name in names {
                tracing::info!(target: "audit", list = %name, "blocklist removed from the config: its entries are lifted");
                forget_metrics(&name);
            }
        }
        Err(error) => {
            tracing::error!(%error, "blocklists: cannot lift the entries of removed lists");
        }
    }
}

/// Removes a list's series (its kernel counters stay with its slot's name until reused).
fn forget_metrics(name: &str) {
    let m = &metrics().blocklists;
    let _ = m.entries.remove_label_values(&[name]);
    let _ = m.refused.remove_label_values(&[name]);
    let _ = m.last_success.remove_label_values(&[name]);
    let _ = m.apply_seconds.remove_label_values(&[name]);
    for outcome in ["applied", "unchanged", "failed"] {
        let _ = m.updates.remove_label_values(&[name, outcome]);
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
    cancelled: Arc<AtomicBool>,
    runtime_dir: PathBuf,
) {
    let name = list.name.clone();
    let slot = {
        let (table, name) = (Arc::clone(&table), name.clone());
        tokio::task::spawn_blocking(move || {
            table
                .lock()
                .expect("the deny table lock is never poisoned")
                .slot_for(&name)
        })
        .await
    };
    let slot = match slot {
        Ok(Ok(Some(slot))) => slot,
        Ok(Ok(None)) => {
            tracing::error!(list = %name, "blocklist: no free list slot (63 at most)");
            return;
        }
        Ok(Err(error)) => {
            tracing::error!(list = %name, %error, "blocklist: cannot take a list slot");
            return;
        }
        Err(_) => return,
    };
    let applier = Applier {
        name: name.clone(),
        slot,
        table,
        rails,
        cancelled,
    };
    let mut source = match fetch::Source::new(&list, &runtime_dir) {
        Ok(source) => source,
        Err(error) => {
            tracing::error!(list = %name, %error, "blocklist: not loaded");
            return;
        }
    };
    if let Some((cached, version)) = source.cached() {
        if applier.apply(cached, "the last good copy").await {
            source.commit(version, None);
        }
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
                m.last_success
                    .with_label_values(&[&name])
                    .set(crate::telemetry::metrics::unix_now());
                failing = false;
            }
            Ok(fetch::Fetched::Changed(text, version)) => {
                if applier.apply(text.clone(), "the source").await {
                    source.commit(version, Some(&text));
                    m.last_success
                        .with_label_values(&[&name])
                        .set(crate::telemetry::metrics::unix_now());
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
    /// Set when the list was removed or changed: no write may follow.
    cancelled: Arc<AtomicBool>,
}

/// Why a text was not applied.
enum NotApplied {
    /// The list was removed or changed meanwhile.
    Cancelled,
    /// Not one line could be read: an error page, not a list.
    Unreadable,
    /// The table could not be written.
    Table(crate::fastpath::FastpathError),
}

impl Applier {
    /// Reads `text` and applies it as a diff; whether it was applied in full (a version that
    /// was not, or only in part, is read again at the next look).
    async fn apply(&self, text: Bytes, from: &'static str) -> bool {
        let started = Instant::now();
        let (table, rails, slot) = (Arc::clone(&self.table), self.rails.clone(), self.slot);
        let cancelled = Arc::clone(&self.cancelled);
        let work = tokio::task::spawn_blocking(move || {
            let parsed = parse::parse(&text, rails.guard, &rails.allow);
            if parsed.entries.is_empty() && parsed.refused > 0 {
                return (parsed, Err(NotApplied::Unreadable));
            }
            let mut table = table.lock().expect("the deny table lock is never poisoned");
            if cancelled.load(Ordering::SeqCst) {
                return (parsed, Err(NotApplied::Cancelled));
            }
            let done = table
                .replace(slot, &parsed.entries)
                .map_err(NotApplied::Table);
            (parsed, done)
        });
        let m = &metrics().blocklists;
        let name = self.name.as_str();
        let (parsed, done) = match work.await {
            Ok((parsed, Ok(done))) => (parsed, done),
            Ok((_, Err(NotApplied::Cancelled))) => return false,
            Ok((parsed, Err(NotApplied::Unreadable))) => {
                m.updates.with_label_values(&[name, "failed"]).inc();
                tracing::error!(list = %name, from, refused = parsed.refused, first = ?parsed.refusals.first(), "blocklist: not one line is an address or network; the last good copy stays applied");
                return false;
            }
            Ok((_, Err(NotApplied::Table(error)))) => {
                m.updates.with_label_values(&[name, "failed"]).inc();
                tracing::error!(list = %name, %error, "blocklist: cannot write the deny table; read again at the next look");
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
        // Entries left out for want of room are tried again with the next look.
        done.no_room == 0
    }
}
