//! Errors of the fast path.

use std::path::PathBuf;

/// What can go wrong loading, attaching or using the XDP program and its maps.
#[derive(Debug, thiserror::Error)]
pub enum FastpathError {
    /// The kernel refused BPF to this process.
    #[error("BPF is not permitted ({source}): run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")]
    NotPermitted {
        /// The refused operation.
        #[source]
        source: aya::EbpfError,
    },
    /// The process lacks the capabilities BPF and XDP need.
    #[error("BPF is not permitted: the process lacks {missing}; run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")]
    MissingCapabilities {
        /// Capability names.
        missing: String,
    },
    /// Loading the object or creating its maps failed.
    #[error("cannot load the XDP program: {source}")]
    Load {
        /// Cause.
        #[source]
        source: aya::EbpfError,
    },
    /// The verifier or the kernel rejected the program.
    #[error("the kernel rejected the XDP program: {source}")]
    Program {
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A configured interface does not exist.
    #[error("interface `{interface}` does not exist (check `fastpath.interfaces`)")]
    NoSuchInterface {
        /// The name.
        interface: String,
    },
    /// Another XDP program is attached to the interface.
    #[error("interface `{interface}` already has an XDP program that this daemon's pin directory does not hold: another api-shield with another fastpath.pin_dir (`api-shield detach --pin-dir DIR` frees it) or another tool (`ip link set dev {interface} xdp off`)")]
    InterfaceBusy {
        /// The name.
        interface: String,
    },
    /// Attaching failed for another reason.
    #[error("cannot attach to `{interface}` in {mode} mode: {source}")]
    Attach {
        /// The name.
        interface: String,
        /// The mode tried.
        mode: &'static str,
        /// Cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The pinned maps are not there (the daemon never ran since boot).
    #[error("no api-shield maps are pinned under {}: start the daemon (api-shield run) first", dir.display())]
    NotPinned {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// The pinned maps are there but this user may not read them.
    #[error("permission denied on {}: the pinned maps are root-only; run this as root", dir.display())]
    PinsNotReadable {
        /// The directory looked in.
        dir: PathBuf,
    },
    /// A map operation failed.
    #[error("map `{map}`: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Cause.
        #[source]
        source: aya::maps::MapError,
    },
    /// Pinning or unpinning failed.
    #[error("cannot pin or unpin {}: {source}", path.display())]
    Pin {
        /// The bpffs path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime status file could not be written or read.
    #[error("status file {}: {source}", path.display())]
    Status {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No ban exists for that address or network.
    #[error("no ban for {target}")]
    NoSuchBan {
        /// The address or network.
        target: String,
    },
    /// Another process owns the pin directory.
    #[error(transparent)]
    PinDirLocked(#[from] super::pin_lock::PinLockError),
    /// The guard rails refused a ban.
    #[error(transparent)]
    Refused(#[from] crate::config::GuardError),
    /// The ban map is full.
    #[error("the ban map is full ({max} entries, fastpath.max_bans); unban something or let bans expire")]
    BansFull {
        /// Capacity.
        max: u32,
    },
    /// The deny table is full.
    #[error("the deny table is full ({max} entries, fastpath.max_deny): raise it (a restart applies it) or shorten the lists")]
    DenyFull {
        /// Capacity.
        max: u32,
    },
}

impl FastpathError {
    pub(crate) fn map(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> FastpathError {
        move |source| FastpathError::Map { map, source }
    }
}
