//! The program's maps. All but the ring buffer are pinned by name, so their state survives a
//! daemon restart and the CLI can read them while the daemon is down.

use api_shield_common::{
    maps::{
        BAN_ENTRIES, EVENTS_BYTES, LIMITER_ENTRIES, MAX_LISTS, PORT_WORDS, RULE_ENTRIES,
        UNTRACKED_SLOTS, VERDICT_SLOTS,
    },
    Addr, BanValue, Counter, InsertBudget, LimiterState, ListName, Reason, RuleValue, ShieldConfig,
    VerdictSlot,
};
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};

#[map]
pub static CONFIG: Array<ShieldConfig> = Array::pinned(1, 0);

#[map]
pub static PORTS: Array<u64> = Array::pinned(PORT_WORDS, 0);

#[map]
pub static ALLOW: LpmTrie<Addr, RuleValue> = LpmTrie::pinned(RULE_ENTRIES, 0);

#[map]
pub static DENY: LpmTrie<Addr, RuleValue> = LpmTrie::pinned(RULE_ENTRIES, 0);

/// Keyed by the 16 address bytes held as two words, like `LIMITER`. Not preallocated: its
/// size (`fastpath.max_deny`) may be millions.
#[map]
pub static DENY_EXACT: HashMap<[u64; 2], RuleValue> =
    HashMap::pinned(RULE_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
pub static BANS: LpmTrie<Addr, BanValue> = LpmTrie::pinned(BAN_ENTRIES, 0);

/// Keyed by the 16 address bytes held as two words (the same bytes as `Addr` in memory).
#[map]
pub static LIMITER: LruHashMap<[u64; 2], LimiterState> = LruHashMap::pinned(LIMITER_ENTRIES, 0);

#[map]
pub static UNTRACKED: Array<LimiterState> = Array::pinned(UNTRACKED_SLOTS, 0);

#[map]
pub static INSERT_BUDGET: PerCpuArray<InsertBudget> = PerCpuArray::pinned(1, 0);

#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(Reason::COUNT, 0);

#[map]
pub static LIST_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(MAX_LISTS, 0);

/// Written by the daemon only; declared here so the loader creates and pins it with the rest.
#[map]
pub static LIST_NAMES: Array<ListName> = Array::pinned(MAX_LISTS, 0);

#[map]
pub static RULES_GEN: Array<u64> = Array::pinned(1, 0);

#[map]
pub static VERDICTS: PerCpuArray<VerdictSlot> = PerCpuArray::with_max_entries(VERDICT_SLOTS, 0);

/// The tick clock as last read on this CPU, with the jiffies it was read under (`main.rs`,
/// `monotonic_ns`). A cache, so not pinned.
#[repr(C)]
pub struct TickClock {
    pub jiffies: u64,
    pub ns: u64,
}

#[map]
pub static TICK_CLOCK: PerCpuArray<TickClock> = PerCpuArray::with_max_entries(1, 0);

/// Room for a SYN cookie reply (`syncookie.rs`): the SYN's TCP header and the reply's headers
/// are built here, off the program's 512-byte stack. A scratch area, so not pinned.
#[repr(C)]
pub struct CookieScratch {
    /// The SYN's TCP header, options included.
    pub syn: [u8; 60],
    /// The SYN's source and destination (IPv4 in the first four bytes).
    pub theirs: [u8; 16],
    pub ours: [u8; 16],
    pub ip: [u8; 40],
    pub tcp: [u8; 24],
}

#[map]
pub static COOKIE_SCRATCH: PerCpuArray<CookieScratch> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);
