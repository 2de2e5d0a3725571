//! Types shared by the XDP program (`api-shield-ebpf`) and the daemon (`api-shield`).
//!
//! Everything here is `#[repr(C)]` plain data with a layout both halves agree on: map names,
//! map keys and values, the counter indices and the ring-buffer event. The `user` feature adds
//! `aya::Pod` impls for the daemon. Nothing else lives here.
#![no_std]

pub mod config;
pub mod event;
pub mod maps;
pub mod reason;
pub mod values;

pub use config::ShieldConfig;
pub use event::DropEvent;
pub use reason::Reason;
pub use values::{BanValue, Counter, InsertBudget, LimiterState, ListName, RuleValue, VerdictSlot};

/// Version of the map layout. It is part of the pin path, so a daemon built with another layout
/// never misreads maps pinned by an older one.
pub const LAYOUT_VERSION: u32 = 6;

/// Addresses of both families are stored as 16 bytes: IPv4 as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
pub type Addr = [u8; 16];

/// Maps an IPv4 address (network order bytes) to its IPv4-mapped IPv6 form.
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> Addr {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// Prefix length, in the 128-bit mapped space, of an IPv4 prefix of `len` bits.
#[inline(always)]
pub const fn v4_mapped_prefix(len: u32) -> u32 {
    96 + len
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type below is #[repr(C)], made only of integers and byte arrays, with
    // explicit padding fields, so any bit pattern is a valid value.
    unsafe impl aya::Pod for crate::ShieldConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::RuleValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::BanValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::LimiterState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::InsertBudget {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::Counter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::DropEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::VerdictSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_mapping_matches_std() {
        extern crate std;
        let mapped = std::net::Ipv4Addr::new(10, 1, 2, 3)
            .to_ipv6_mapped()
            .octets();
        assert_eq!(v4_mapped([10, 1, 2, 3]), mapped);
        assert_eq!(v4_mapped_prefix(24), 120);
    }
}
