//! Names and sizes of the maps the XDP program declares (BPF object names are at most 15 bytes).

/// `Array[1]` of [`crate::ShieldConfig`]: the settings the daemon writes.
pub const CONFIG: &str = "CONFIG";
/// `Array` of `u64` bitmaps: protected TCP ports (words 0..1024) and UDP ports (1024..2048).
pub const PORTS: &str = "PORTS";
/// `LpmTrie` of mapped addresses -> [`crate::RuleValue`]: sources that always pass.
pub const ALLOW: &str = "ALLOW";
/// `LpmTrie` of mapped addresses -> [`crate::RuleValue`]: networks that are always dropped
/// (entries of one address go to [`DENY_EXACT`]).
pub const DENY: &str = "DENY";
/// `Hash` (not preallocated) of the 16 address bytes -> [`crate::RuleValue`]: single
/// addresses (IPv4 /32, IPv6 /128) that are always dropped, one hash lookup however many.
pub const DENY_EXACT: &str = "DENY_EXACT";
/// `LpmTrie` of mapped addresses -> [`crate::BanValue`]: bans with a monotonic expiry.
pub const BANS: &str = "BANS";
/// `LruHash` of mapped (and, for IPv6, prefix-masked) source -> [`crate::LimiterState`].
pub const LIMITER: &str = "LIMITER";
/// `Array[UNTRACKED_SLOTS]` of [`crate::LimiterState`]: the shared budgets of sources that could
/// not be tracked, one per class of packet ([`UNTRACKED_TCP`], [`UNTRACKED_OTHER`]).
pub const UNTRACKED: &str = "UNTRACKED";
/// `PerCpuArray[1]` of [`crate::InsertBudget`]: new limiter entries allowed per CPU per second.
pub const INSERT_BUDGET: &str = "INSERT_BUDGET";
/// `PerCpuArray` of [`crate::Counter`], indexed by [`crate::Reason`].
pub const STATS: &str = "STATS";
/// `Array[1]` of `u64`: bumped by userspace whenever allow, deny or bans change, so the
/// program's verdict cache forgets what it decided under the old rules.
pub const RULES_GEN: &str = "RULES_GEN";
/// `PerCpuArray` of [`crate::VerdictSlot`]: recent "over budget until T" verdicts per CPU.
pub const VERDICTS: &str = "VERDICTS";
/// `PerCpuArray[MAX_LISTS]` of [`crate::Counter`]: packets dropped (or, in a dry run, that
/// would have been) by deny entries, per list (the entry's [`crate::RuleValue::list`]).
pub const LIST_STATS: &str = "LIST_STATS";
/// `Array[MAX_LISTS]` of [`crate::values::ListName`]: the name of each list slot (slot 0 is the
/// config's `fastpath.deny`), so counters read without a daemon still have names, and a
/// restarted daemon finds its lists' slots again.
pub const LIST_NAMES: &str = "LIST_NAMES";
/// `RingBuf` of [`crate::DropEvent`].
pub const EVENTS: &str = "EVENTS";

/// Maps pinned under the pin directory, so state survives a daemon restart.
pub const PINNED: [&str; 13] = [
    CONFIG,
    PORTS,
    ALLOW,
    DENY,
    DENY_EXACT,
    BANS,
    LIMITER,
    UNTRACKED,
    INSERT_BUDGET,
    STATS,
    RULES_GEN,
    LIST_STATS,
    LIST_NAMES,
];

/// Slots in [`UNTRACKED`]: untracked sources share one budget per class of packet, so a flood
/// of one class from spoofed sources cannot spend the budget of the other.
pub const UNTRACKED_SLOTS: u32 = 2;
/// The [`UNTRACKED`] slot of bare TCP SYNs (SYN without ACK, RST or FIN): never-seen clients
/// connect on it.
pub const UNTRACKED_TCP: u32 = 0;
/// The [`UNTRACKED`] slot of everything else the limiter charges: TCP segments that are not a
/// bare SYN and belong to no connection's flow check (no flags, SYN with FIN or RST, a cut
/// header), UDP and other protocols, fragments and transports hidden behind extension headers.
pub const UNTRACKED_OTHER: u32 = 1;

/// Slots in [`LIST_STATS`] and [`LIST_NAMES`]: the config's deny list and up to 63 blocklists.
pub const MAX_LISTS: u32 = 64;
/// The slot of the config's `fastpath.deny` rules.
pub const CONFIG_DENY_LIST: u32 = 0;

/// Words in [`PORTS`]: 65536 bits per protocol, two protocols.
pub const PORT_WORDS: u32 = 2048;
/// First word of the UDP half of [`PORTS`].
pub const UDP_PORT_WORD_BASE: u32 = 1024;
/// Entries in [`ALLOW`] and in [`DENY`].
pub const RULE_ENTRIES: u32 = 16_384;
/// Entries in [`BANS`].
pub const BAN_ENTRIES: u32 = 65_536;
/// Default entries in [`LIMITER`] (the daemon may set another size before the map is created).
pub const LIMITER_ENTRIES: u32 = 131_072;
/// Slots per CPU in [`VERDICTS`] (a power of two).
pub const VERDICT_SLOTS: u32 = 1 << VERDICT_BITS;
/// Longest-prefix lookups of the ban list per packet. The trie answers only the longest match,
/// so an expired ban (not yet swept by the daemon) hides a broader one in force: the program
/// deletes it and looks again, through this many nested expired bans.
pub const BAN_LOOKUPS: u32 = 8;
/// log2 of [`VERDICT_SLOTS`].
pub const VERDICT_BITS: u32 = 12;
/// Bytes in the [`EVENTS`] ring buffer (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Name of the XDP program in the object file.
pub const PROGRAM: &str = "api_shield";
