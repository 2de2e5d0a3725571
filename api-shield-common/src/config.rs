//! The settings record the daemon writes into the `CONFIG` map.

/// The program acts at all; without it every packet passes (counted as `pass_disabled`).
pub const FLAG_ENABLED: u32 = 1 << 0;
/// Count what would be dropped and drop nothing.
pub const FLAG_DRY_RUN: u32 = 1 << 1;
/// Every IP packet is subject to the limiter, whatever its protocol and port.
pub const FLAG_PROTECT_ALL: u32 = 1 << 2;
/// At least one TCP port is protected (non-first fragments of TCP are then limited too).
pub const FLAG_PROTECT_TCP: u32 = 1 << 3;
/// At least one UDP port is protected (non-first fragments of UDP are then limited too).
pub const FLAG_PROTECT_UDP: u32 = 1 << 4;
/// Read the precise monotonic clock per packet instead of the tick-resolution one. The precise
/// read costs a TSC read (tens of ns in a VM); the tick clock costs a load of jiffies per packet
/// and a coarse clock read per tick, and its error, at most two ticks, the daemon adds to the
/// tolerances.
pub const FLAG_PRECISE_CLOCK: u32 = 1 << 5;
/// A bare SYN from a source that has not completed a handshake is answered with a SYN cookie
/// from the NIC when the kernel would answer it with one, instead of passed or dropped. Never
/// set with `FLAG_DRY_RUN`.
pub const FLAG_SYN_COOKIES: u32 = 1 << 6;

/// Settings read by the XDP program on every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShieldConfig {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// New limiter entries a CPU may create per second; past it, unknown sources share the
    /// untracked budget instead of evicting the state of known ones.
    pub new_sources_per_cpu: u32,
    /// GCRA emission interval of one source: 1 s / rate.
    pub emission_ns: u64,
    /// GCRA tolerance of one source: emission interval x burst.
    pub tolerance_ns: u64,
    /// Emission interval of the shared untracked budget.
    pub untracked_emission_ns: u64,
    /// Tolerance of the shared untracked budget.
    pub untracked_tolerance_ns: u64,
    /// At most one drop event per source (or ban/deny entry) per this many nanoseconds.
    pub event_interval_ns: u64,
    /// Mask applied to IPv6 sources before the limiter lookup (e.g. /64).
    pub v6_mask: [u8; 16],
}
