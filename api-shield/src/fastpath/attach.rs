//! Attaching the program to interfaces: driver mode first (or the configured mode), generic as
//! the fallback, each link pinned so the program survives a restart and the next start can
//! swap its successor in atomically (`bpf_link_update`).

use std::path::{Path, PathBuf};

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
    Xdp, XdpMode,
};

use super::{errno, FastpathError, RuntimeStatus};
use crate::config::{FastpathConfig, XdpModeSetting};

/// The mode an interface runs the program in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveMode {
    /// Native, in the driver.
    Driver,
    /// Generic, on socket buffers.
    Generic,
    /// Swapped into a link pinned by an earlier run whose mode was not recorded.
    Unknown,
}

impl ActiveMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveMode::Driver => "driver",
            ActiveMode::Generic => "generic",
            ActiveMode::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> ActiveMode {
        match text {
            "driver" => ActiveMode::Driver,
            "generic" => ActiveMode::Generic,
            _ => ActiveMode::Unknown,
        }
    }
}

/// The program attached to one interface.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Mode.
    pub mode: ActiveMode,
    /// Whether an earlier run's link was reused (atomic swap).
    pub reused: bool,
    /// bpffs path of the link.
    pub link_pin: PathBuf,
    /// The interface's index when attached; `None` while the interface is gone.
    pub ifindex: Option<u32>,
}

impl Attachment {
    /// Its mode, or `gone` while the interface is away.
    pub fn state(&self) -> &'static str {
        if self.ifindex.is_some() {
            self.mode.as_str()
        } else {
            "gone"
        }
    }
}

/// The interface index, or a clear error when the interface does not exist.
pub(super) fn interface_index(interface: &str) -> Result<u32, FastpathError> {
    nix::net::if_::if_nametoindex(interface).map_err(|_| FastpathError::NoSuchInterface {
        interface: interface.to_owned(),
    })
}

/// Attaches to every configured interface.
pub(super) fn attach_all(
    program: &mut Xdp,
    config: &FastpathConfig,
    links_dir: &Path,
    previous: Option<&RuntimeStatus>,
) -> Result<Vec<Attachment>, FastpathError> {
    std::fs::create_dir_all(links_dir).map_err(|source| FastpathError::Pin {
        path: links_dir.to_path_buf(),
        source,
    })?;
    config
        .interfaces
        .iter()
        .map(|interface| {
            let previous_mode = previous
                .and_then(|s| s.interfaces.iter().find(|i| &i.name == interface))
                .map(|i| ActiveMode::parse(&i.mode));
            attach_one(
                program,
                interface,
                config.mode,
                &links_dir.join(interface),
                previous_mode,
            )
        })
        .collect()
}

fn attach_one(
    program: &mut Xdp,
    interface: &str,
    setting: XdpModeSetting,
    pin: &Path,
    previous_mode: Option<ActiveMode>,
) -> Result<Attachment, FastpathError> {
    if pin.exists() {
        let previous = previous_mode.unwrap_or(ActiveMode::Unknown);
        let wanted_differs = match setting {
            XdpModeSetting::Auto => false,
            XdpModeSetting::Driver => previous != ActiveMode::Driver,
            XdpModeSetting::Generic => previous != ActiveMode::Generic,
        };
        if wanted_differs {
            tracing::info!(
                interface,
                was = previous.as_str(),
                "attach mode changed: replacing the pinned link"
            );
            remove_pin(pin)?;
        } else {
            match swap_into_pinned(program, pin) {
                Ok(()) => {
                    tracing::info!(
                        interface,
                        mode = previous.as_str(),
                        "swapped the new program into the pinned link"
                    );
                    return Ok(Attachment {
                        interface: interface.to_owned(),
                        mode: previous,
                        reused: true,
                        link_pin: pin.to_path_buf(),
                        ifindex: interface_index(interface).ok(),
                    });
                }
                Err(error) => {
                    tracing::warn!(interface, %error, "stale pinned link: attaching anew");
                    remove_pin(pin)?;
                }
            }
        }
    }
    let modes: &[(XdpMode, ActiveMode)] = match setting {
        XdpModeSetting::Auto => &[
            (XdpMode::Driver, ActiveMode::Driver),
            (XdpMode::Skb, ActiveMode::Generic),
        ],
        XdpModeSetting::Driver => &[(XdpMode::Driver, ActiveMode::Driver)],
        XdpModeSetting::Generic => &[(XdpMode::Skb, ActiveMode::Generic)],
    };
    for (i, (mode, active)) in modes.iter().enumerate() {
        match program.attach(interface, *mode) {
            Ok(id) => {
                let link = program
                    .take_link(id)
                    .map_err(|source| attach_error(interface, *active, source))?;
                let fd_link = FdLink::try_from(link).map_err(|e| FastpathError::Pin {
                    path: pin.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
                fd_link.pin(pin).map_err(|e| FastpathError::Pin {
                    path: pin.to_path_buf(),
                    source: std::io::Error::other(e),
                })?;
                tracing::info!(interface, mode = active.as_str(), "attached");
                return Ok(Attachment {
                    interface: interface.to_owned(),
                    mode: *active,
                    reused: false,
                    link_pin: pin.to_path_buf(),
                    ifindex: interface_index(interface).ok(),
                });
            }
            Err(source) => {
                if matches!(errno::in_chain(&source), Some(libc::EBUSY | libc::EEXIST)) {
                    return Err(FastpathError::InterfaceBusy {
                        interface: interface.to_owned(),
                    });
                }
                if i + 1 == modes.len() {
                    return Err(attach_error(interface, *active, source));
                }
                tracing::warn!(interface, error = %source, "driver mode unavailable: falling back to generic mode");
            }
        }
    }
    unreachable!("the mode list is never empty")
}

/// What became of an attached interface since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Presence {
    /// Still there, program attached.
    Unchanged,
    /// It went away since the last look (and the kernel detached the program with it).
    Vanished,
    /// Still away.
    Absent,
    /// It came back (possibly as a new device of the same name) and the program is attached.
    Reattached,
    /// It is there but attaching failed; tried again at the next look.
    ReattachFailed,
}

/// Follows `attachment`'s interface: notices when it disappears (dropping the dead link's pin)
/// and attaches `program` again when an interface of that name exists again.
pub(super) fn follow(
    program: &mut Xdp,
    attachment: &mut Attachment,
    setting: XdpModeSetting,
) -> Presence {
    let now = interface_index(&attachment.interface).ok();
    if now.is_some() && now == attachment.ifindex {
        return Presence::Unchanged;
    }
    // Gone, or replaced by a new device of the same name: the old link is dead either way.
    let was_attached = attachment.ifindex.take().is_some();
    if was_attached {
        if let Err(error) = std::fs::remove_file(&attachment.link_pin) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, pin = %attachment.link_pin.display(), "cannot unpin a dead link");
            }
        }
    }
    if now.is_none() {
        return if was_attached {
            Presence::Vanished
        } else {
            Presence::Absent
        };
    }
    match attach_one(
        program,
        &attachment.interface,
        setting,
        &attachment.link_pin,
        None,
    ) {
        Ok(fresh) => {
            *attachment = fresh;
            Presence::Reattached
        }
        Err(error) => {
            tracing::warn!(interface = %attachment.interface, %error, "cannot attach to the returning interface");
            Presence::ReattachFailed
        }
    }
}

fn swap_into_pinned(program: &mut Xdp, pin: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let pinned = PinnedLink::from_pin(pin)?;
    let link = XdpLink::try_from(FdLink::from(pinned))?;
    program.attach_to_link(link)?;
    Ok(())
}

fn remove_pin(pin: &Path) -> Result<(), FastpathError> {
    std::fs::remove_file(pin).map_err(|source| FastpathError::Pin {
        path: pin.to_path_buf(),
        source,
    })
}

fn attach_error(
    interface: &str,
    mode: ActiveMode,
    source: aya::programs::ProgramError,
) -> FastpathError {
    FastpathError::Attach {
        interface: interface.to_owned(),
        mode: mode.as_str(),
        source,
    }
}
