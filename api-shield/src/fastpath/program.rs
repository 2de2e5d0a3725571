//! The embedded XDP object: loading it (maps pinned by name under the layout directory) and the
//! daemon's [`Fastpath`], which owns the loaded program from start to stop.

use std::path::{Path, PathBuf};

use api_shield_common::{maps, LAYOUT_VERSION};
use aya::{
    maps::{MapData, RingBuf},
    programs::Xdp,
    Ebpf, EbpfLoader,
};

use super::{
    attach::{self, Attachment},
    bpffs,
    deny_table::{DenyTable, RuleKey},
    errno, rules,
    settings::{port_words, shield_config},
    upgrade, FastpathError, InterfaceStatus, PinLock, PinnedMaps, RuntimeStatus,
};
use crate::config::FastpathConfig;

/// The XDP object built by build.rs from `api-shield-ebpf`.
static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/api-shield-ebpf.o"));

/// The directory for this map layout under a pin directory.
pub fn layout_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join(format!("v{LAYOUT_VERSION}"))
}

/// Where the links that keep the program attached are pinned, one per interface.
pub(super) fn links_dir(pin_dir: &Path) -> PathBuf {
    layout_dir(pin_dir).join("links")
}

/// Loads the program into the kernel without attaching it. Maps are reused from `layout_dir`
/// when pinned there, created and pinned otherwise, with the limiter, ban, allow and deny map
/// sizes of `config` (`limiter.max_sources`, `max_bans`, `max_allow`, `max_deny`).
pub fn load_program(layout_dir: &Path, config: &FastpathConfig) -> Result<Ebpf, FastpathError> {
    bpffs::ensure_dir(layout_dir)?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(layout_dir)
        .map_max_entries(maps::LIMITER, config.limiter.max_sources)
        .map_max_entries(maps::BANS, config.max_bans)
        .map_max_entries(maps::ALLOW, config.max_allow)
        .map_max_entries(maps::DENY, config.max_deny)
        .map_max_entries(maps::DENY_EXACT, config.max_deny)
        .load(PROGRAM_OBJECT)
        .map_err(|source| {
            if errno::in_chain(&source) == Some(libc::EPERM) {
                FastpathError::NotPermitted { source }
            } else {
                FastpathError::Load { source }
            }
        })?;
    let program: &mut Xdp = ebpf
        .program_mut(maps::PROGRAM)
        .expect("the object defines the program")
        .try_into()
        .expect("the program is XDP");
    program
        .load()
        .map_err(|source| FastpathError::Program { source })?;
    Ok(ebpf)
}

/// Writes a config's settings, ports and allow/deny lists into the maps. `CONFIG` goes last, so
/// the program never runs with new settings and old lists. For callers without blocklists (a
/// test, a benchmark): the deny table is made to hold exactly the config's `fastpath.deny`.
pub fn apply_config(maps: &mut PinnedMaps, config: &FastpathConfig) -> Result<(), FastpathError> {
    let mut deny = DenyTable::from_maps(maps, config.max_deny)?;
    apply_config_with(maps, &mut deny, config)
}

/// [`apply_config`] through the deny table the caller keeps.
pub fn apply_config_with(
    maps: &mut PinnedMaps,
    deny: &mut DenyTable,
    config: &FastpathConfig,
) -> Result<(), FastpathError> {
    apply_lists(maps, deny, config)?;
    apply_settings(maps, config)
}

/// The first half of [`apply_config`]: protected ports, the allow list, and the config's own
/// slot of the deny table (the blocklists' entries stay as they are).
pub fn apply_lists(
    maps: &mut PinnedMaps,
    deny: &mut DenyTable,
    config: &FastpathConfig,
) -> Result<(), FastpathError> {
    write_ports_and_allow(maps, config)?;
    let wanted = config.deny.iter().map(RuleKey::of).collect();
    let done = deny.replace(api_shield_common::maps::CONFIG_DENY_LIST, &wanted)?;
    if done.no_room > 0 {
        return Err(FastpathError::DenyFull {
            max: config.max_deny,
        });
    }
    tracing::debug!(
        added = done.inserted,
        removed = done.deleted,
        "deny list synchronised"
    );
    maps.bump_rules_generation()
}

fn write_ports_and_allow(
    maps: &mut PinnedMaps,
    config: &FastpathConfig,
) -> Result<(), FastpathError> {
    for (index, word) in port_words(config).into_iter().enumerate() {
        maps.ports
            .set(index as u32, word, 0)
            .map_err(FastpathError::map(maps::PORTS))?;
    }
    let (added, removed) = rules::sync(&mut maps.allow, maps::ALLOW, &config.allow)?;
    tracing::debug!(added, removed, "allow list synchronised");
    Ok(())
}

/// The second half of [`apply_config`]: the settings word the program reads first.
pub fn apply_settings(maps: &mut PinnedMaps, config: &FastpathConfig) -> Result<(), FastpathError> {
    maps.config
        .set(0, shield_config(config), 0)
        .map_err(FastpathError::map(maps::CONFIG))
}

/// The running fast path of the daemon.
pub struct Fastpath {
    ebpf: Ebpf,
    maps: Option<PinnedMaps>,
    deny: std::sync::Arc<std::sync::Mutex<DenyTable>>,
    attachments: Vec<Attachment>,
    config: FastpathConfig,
    /// Held until the program is detached (or left attached) at stop.
    lock: PinLock,
}

impl Fastpath {
    /// Loads the program, writes the config into its maps and attaches it to every configured
    /// interface (swapping it in atomically where a pinned link from an earlier run exists).
    /// `lock` is the pin directory's, taken before anything else was touched. The deny table
    /// first lets go of the blocklists an earlier run had that `blocklists` (the configured
    /// lists' names) does not name, so they take no room from the config's own list.
    pub fn start(
        config: &FastpathConfig,
        blocklists: &[&str],
        lock: PinLock,
    ) -> Result<Fastpath, FastpathError> {
        debug_assert_eq!(lock.dir(), config.pin_dir);
        super::privileges::check()?;
        for interface in &config.interfaces {
            attach::interface_index(interface)?;
        }
        let dir = layout_dir(&config.pin_dir);
        let mut ebpf = load_program(&dir, config)?;
        let mut maps = PinnedMaps::open(&dir)?;
        let mut deny = DenyTable::open(&dir, config.max_deny)?;
        for name in deny.release_unlisted(blocklists)? {
            tracing::info!(target: "audit", list = %name, "blocklist no longer configured: its entries are lifted");
        }
        apply_config_with(&mut maps, &mut deny, config)?;
        let carried = upgrade::carry_over(
            &config.pin_dir,
            &mut maps,
            &links_dir(&config.pin_dir),
            &config.interfaces,
        )?;
        if carried != upgrade::CarriedOver::default() {
            tracing::info!(
                bans = carried.bans,
                links = carried.links,
                "carried bans and pinned links over from the previous map layout"
            );
        }
        let previous = RuntimeStatus::read(&config.runtime_dir);
        let program: &mut Xdp = ebpf
            .program_mut(maps::PROGRAM)
            .expect("the object defines the program")
            .try_into()
            .expect("the program is XDP");
        let attachments = attach::attach_all(
            program,
            config,
            &links_dir(&config.pin_dir),
            previous.as_ref(),
        )?;
        for attachment in &attachments {
            crate::telemetry::metrics()
                .xdp_attached
                .with_label_values(&[attachment.interface.as_str()])
                .set(1);
        }
        let fastpath = Fastpath {
            ebpf,
            maps: Some(maps),
            deny: std::sync::Arc::new(std::sync::Mutex::new(deny)),
            attachments,
            config: config.clone(),
            lock,
        };
        fastpath.write_status()?;
        Ok(fastpath)
    }

    fn write_status(&self) -> Result<(), FastpathError> {
        RuntimeStatus {
            pid: std::process::id(),
            interfaces: self
                .attachments
                .iter()
                .map(|a| InterfaceStatus {
                    name: a.interface.clone(),
                    mode: a.mode.as_str().to_owned(),
                })
                .collect(),
            dry_run: self.config.dry_run,
            keep_attached: self.config.keep_attached,
        }
        .write(&self.config.runtime_dir)
    }

    /// Takes the settings of a reloaded config that apply to a running fast path:
    /// `keep_attached` (read at stop) and `dry_run` (shown by `stats`). Interfaces, mode and
    /// directories stay as started (a reload reports them as pending a restart).
    pub fn update(&mut self, config: &FastpathConfig) {
        let changed = self.config.keep_attached != config.keep_attached
            || self.config.dry_run != config.dry_run;
        self.config.keep_attached = config.keep_attached;
        self.config.dry_run = config.dry_run;
        if changed {
            if let Err(error) = self.write_status() {
                tracing::warn!(%error, "cannot update the runtime status file");
            }
        }
    }

    /// Where each interface got attached.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Looks at every attached interface: logs and counts one that disappeared (the kernel
    /// detaches the program with it; traffic on it, if it returns, is unfiltered until the next
    /// look) and attaches again to one that is back.
    pub fn follow_interfaces(&mut self) {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(maps::PROGRAM)
            .expect("the object defines the program")
            .try_into()
            .expect("the program is XDP");
        for attachment in &mut self.attachments {
            let attached = crate::telemetry::metrics()
                .xdp_attached
                .with_label_values(&[attachment.interface.as_str()]);
            match attach::follow(program, attachment, self.config.mode) {
                attach::Presence::Unchanged => {}
                attach::Presence::Vanished => {
                    tracing::warn!(
                        interface = %attachment.interface,
                        "interface disappeared: its XDP program went with it; attaching again \
                         when it returns"
                    );
                    attached.set(0);
                }
                attach::Presence::Absent | attach::Presence::ReattachFailed => attached.set(0),
                attach::Presence::Reattached => {
                    tracing::info!(
                        interface = %attachment.interface,
                        mode = attachment.mode.as_str(),
                        "interface is back: attached again"
                    );
                    attached.set(1);
                }
            }
        }
    }

    /// The deny table with who holds each entry: the config's list and the blocklists.
    pub fn deny_table(&self) -> std::sync::Arc<std::sync::Mutex<DenyTable>> {
        std::sync::Arc::clone(&self.deny)
    }

    /// The pinned maps the daemon opened at start (once), for the tasks that keep them.
    pub fn take_maps(&mut self) -> Option<PinnedMaps> {
        self.maps.take()
    }

    /// The drop-event ring buffer (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        let map = self.ebpf.take_map(maps::EVENTS)?;
        RingBuf::try_from(map).ok()
    }

    /// The program's aya-log channel (once).
    pub fn take_logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        match aya_log::EbpfLogger::init(&mut self.ebpf) {
            Ok(logger) => Some(logger),
            Err(error) => {
                tracing::warn!(%error, "the XDP program's log channel is unavailable");
                None
            }
        }
    }

    /// Stops: detaches from every interface unless `keep_attached` is set, in which case the
    /// pinned links keep the program running until the next start swaps in its successor.
    pub fn stop(self) {
        if self.config.keep_attached {
            tracing::info!("leaving the XDP program attached (fastpath.keep_attached)");
        } else {
            for attachment in self.attachments.iter().filter(|a| a.ifindex.is_some()) {
                if let Err(error) = std::fs::remove_file(&attachment.link_pin) {
                    tracing::warn!(%error, pin = %attachment.link_pin.display(), "cannot unpin link");
                }
                tracing::info!(interface = %attachment.interface, "detached");
            }
            RuntimeStatus::remove(&self.config.runtime_dir);
        }
        drop(self.ebpf);
        drop(self.lock);
    }
}
