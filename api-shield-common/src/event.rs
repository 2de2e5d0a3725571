//! The ring-buffer event the program sends when a source starts being dropped.

/// A source (or ban/deny entry) started being dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// Source address, IPv4 as IPv4-mapped IPv6.
    pub addr: [u8; 16],
    /// Monotonic time of the drop.
    pub timestamp_ns: u64,
    /// A [`crate::Reason`] as `u32`.
    pub reason: u32,
    /// 1 when the program only counted the drop (dry run).
    pub dry_run: u32,
    /// The deny list slot of a deny drop ([`crate::RuleValue::list`]); [`NO_LIST`] otherwise.
    pub list: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// [`DropEvent::list`] of a drop that no deny list made.
pub const NO_LIST: u32 = u32::MAX;
