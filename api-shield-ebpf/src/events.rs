//! Drop events to the daemon, at most one per entry per `event_interval`.

use api_shield_common::{DropEvent, Reason, ShieldConfig};

use crate::maps::EVENTS;

/// Sends a drop event when the entry behind `last_event` has not sent one within the configured
/// interval. The time is written before the ring-buffer output so concurrent CPUs rarely send
/// twice; a full ring buffer only loses the event, never the verdict.
#[inline(always)]
pub fn maybe_send(
    cfg: &ShieldConfig,
    last_event: *mut u64,
    src: &[u64; 2],
    reason: Reason,
    list: u32,
    dry_run: bool,
    now: u64,
) {
    // SAFETY: `last_event` points into a map value found by the caller in this run.
    let last = unsafe { core::ptr::read_volatile(last_event) };
    if last != 0 && now.wrapping_sub(last) < cfg.event_interval_ns {
        return;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(last_event, now) };
    let event = DropEvent {
        addr: crate::parse::addr_bytes(src),
        timestamp_ns: now,
        reason: reason as u32,
        dry_run: u32::from(dry_run),
        list,
        _pad: 0,
    };
    let _ = EVENTS.output::<DropEvent>(&event, 0);
}
