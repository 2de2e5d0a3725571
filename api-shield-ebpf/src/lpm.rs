//! LPM trie lookups that hand back a writable value pointer (aya-ebpf only offers `&V`).

use core::ffi::c_void;

use api_shield_common::Addr;
use aya_ebpf::{
    helpers::bpf_map_lookup_elem,
    maps::{lpm_trie::Key, LpmTrie},
};

/// The lookup key of one host address (all 128 bits significant), from its two words.
#[inline(always)]
pub fn host_key(addr: &[u64; 2]) -> Key<Addr> {
    Key::new(128, crate::parse::addr_bytes(addr))
}

/// Longest-prefix lookup returning a pointer into the map value, so the program can update the
/// fields it owns (the last event time) in place.
#[inline(always)]
pub fn lookup_mut<V>(map: &LpmTrie<Addr, V>, key: &Key<Addr>) -> Option<*mut V> {
    let map_ptr = core::ptr::from_ref(map).cast_mut().cast::<c_void>();
    // SAFETY: `map_ptr` is a map definition the loader relocates; `key` outlives the call.
    let value = unsafe { bpf_map_lookup_elem(map_ptr, core::ptr::from_ref(key).cast()) };
    if value.is_null() {
        None
    } else {
        Some(value.cast())
    }
}
