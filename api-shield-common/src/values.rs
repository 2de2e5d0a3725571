//! Map values: rules, bans, limiter state, the insertion budget and counters.

/// Bytes of free text kept with a ban (the operator's or the escalation rule's reason).
pub const BAN_REASON_LEN: usize = 48;

/// Value of an allow or deny entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleValue {
    /// Monotonic time of the last drop event sent for this entry.
    pub last_event_ns: u64,
    /// The list the entry's drops are counted against: the index into `LIST_STATS` and
    /// `LIST_NAMES` (0: the config's `fastpath.deny`; blocklists from 1), the lowest of
    /// `holders`. Unused in the allow table.
    pub list: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Every list holding the entry, a bit per slot (read by the daemon only, so a restarted
    /// daemon knows who holds what).
    pub holders: u64,
}

impl RuleValue {
    /// An entry the lists in `holders` (a bit per slot, not empty) hold.
    pub const fn held_by(holders: u64) -> RuleValue {
        RuleValue {
            last_event_ns: 0,
            list: holders.trailing_zeros(),
            _pad: 0,
            holders,
        }
    }
}

/// Bytes of a list's name in `LIST_NAMES` (UTF-8 padded with zeros).
pub const LIST_NAME_LEN: usize = 32;

/// A list's name as `LIST_NAMES` holds it; all zeros for a free slot.
pub type ListName = [u8; LIST_NAME_LEN];

/// Value of a ban entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanValue {
    /// Monotonic (`bpf_ktime_get_ns`) time the ban ends; 0 means never.
    pub expires_ns: u64,
    /// Wall-clock time the ban was made, in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Monotonic time of the last drop event sent for this ban (written by the program).
    pub last_event_ns: u64,
    /// The ban's own key (prefix length in the mapped space), so the program can delete it once
    /// it has expired: the trie gives back only the value of a match.
    pub prefix_len: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// The ban's own network address (16 bytes, IPv4 mapped).
    pub addr: [u8; 16],
    /// Why, as UTF-8 padded with zeros.
    pub reason: [u8; BAN_REASON_LEN],
}

/// State of one source in the GCRA limiter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimiterState {
    /// Theoretical arrival time of the next conforming packet (monotonic ns).
    pub tat_ns: u64,
    /// Monotonic time of the last drop event sent for this source.
    pub last_event_ns: u64,
    /// 1 once a TCP handshake from this source completed through the program (the source
    /// answered a SYN-ACK, so it is no spoofed address); 0 otherwise.
    pub verified: u64,
}

/// Per-CPU budget of new limiter entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InsertBudget {
    /// Start of the current one-second window (monotonic ns).
    pub window_start_ns: u64,
    /// Entries created in the current window.
    pub inserted: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Last time the program logged that the budget ran out.
    pub last_log_ns: u64,
}

/// Packets and bytes counted for one reason on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes, from the start of the Ethernet header.
    pub bytes: u64,
}

/// One slot of the per-CPU verdict cache: either the limiter found the source `key` over
/// budget, and no packet of it can conform before `until_ns` unless the rules change
/// (`generation`); or a deny entry of list `denied` matched it, and every packet of it is
/// dropped until `until_ns` (one drop-event interval, so the entry's events keep their pace)
/// unless the rules change.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictSlot {
    /// Source address (the 16 bytes, IPv4 mapped), as two words.
    pub key: [u64; 2],
    /// Monotonic time before which the verdict holds.
    pub until_ns: u64,
    /// `RULES_GEN` when the verdict was made.
    pub generation: u64,
    /// The deny list slot of a deny verdict; [`NOT_DENIED`] for an over-budget one.
    pub denied: u32,
    /// Explicit padding.
    pub _pad: u32,
}

/// [`VerdictSlot::denied`] of an over-budget verdict.
pub const NOT_DENIED: u32 = u32::MAX;
