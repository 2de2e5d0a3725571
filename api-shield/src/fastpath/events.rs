//! Reads the drop-event ring buffer and the program's log channel, logging each event.

use std::net::IpAddr;

use api_shield_common::Reason;
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;

use super::addr::addr_ip;

/// A decoded drop event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropStarted {
    /// The source.
    pub source: IpAddr,
    /// Why.
    pub reason: Option<Reason>,
    /// Counted only.
    pub dry_run: bool,
    /// The deny list slot of a deny drop.
    pub list: Option<u32>,
    /// That list's name (`deny` for `fastpath.deny`), as `log_events` found it.
    pub list_name: Option<String>,
}

impl DropStarted {
    /// Why, as logged and shown by `top`: `list:NAME` for a deny list's drop, else the
    /// reason's cause (`banned`, `rate_limited`, ...).
    pub fn cause(&self) -> String {
        match &self.list_name {
            Some(name) => format!("list:{name}"),
            None => self.reason.map_or("unknown", Reason::cause).to_owned(),
        }
    }
}

/// Decodes the bytes of a `DropEvent` (layout in api-shield-common).
pub fn decode(bytes: &[u8]) -> Option<DropStarted> {
    if bytes.len() < 32 {
        return None;
    }
    let addr: [u8; 16] = bytes[..16].try_into().ok()?;
    let reason = u32::from_ne_bytes(bytes[24..28].try_into().ok()?);
    let dry_run = u32::from_ne_bytes(bytes[28..32].try_into().ok()?) != 0;
    let list = bytes
        .get(32..36)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .filter(|l| *l != api_shield_common::event::NO_LIST);
    Some(DropStarted {
        source: addr_ip(&addr),
        reason: Reason::from_index(reason),
        dry_run,
        list,
        list_name: None,
    })
}

/// Registers a map with the reactor. `AsyncFd::new` is deprecated in favour of the unsafe
/// `register`, whose contract (the fd stays open and the same while registered) holds here: the
/// `AsyncFd` owns the map, and the map owns its fd for its whole life.
#[allow(deprecated)]
fn watch<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    AsyncFd::new(inner)
}

/// Logs every drop-start event until the ring buffer fails; `list_name` names a deny list's
/// slot.
pub async fn log_events(
    ring: RingBuf<MapData>,
    list_name: impl Fn(u32) -> Option<String>,
    on_event: impl Fn(&DropStarted),
) -> std::io::Result<()> {
    let mut fd = watch(ring)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(mut event) = decode(&item) {
                crate::telemetry::metrics().drop_events.inc();
                event.list_name = event.list.and_then(&list_name);
                on_event(&event);
                let reason = event.cause();
                if event.dry_run {
                    tracing::warn!(source = %event.source, reason, "source would be dropped (dry run)");
                } else {
                    tracing::warn!(source = %event.source, reason, "source is being dropped");
                }
            }
        }
        guard.clear_ready();
    }
}

/// Forwards the program's aya-log records to the log until the channel fails.
pub async fn forward_program_log(
    logger: aya_log::EbpfLogger<&'static dyn log::Log>,
) -> std::io::Result<()> {
    let mut fd = watch(logger)?;
    loop {
        let mut guard = fd.readable_mut().await?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_shared_layout() {
        let event = api_shield_common::DropEvent {
            addr: api_shield_common::v4_mapped([192, 0, 2, 9]),
            timestamp_ns: 5,
            reason: Reason::DropBanned as u32,
            dry_run: 1,
            list: 3,
            _pad: 0,
        };
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&event.addr);
        bytes.extend_from_slice(&event.timestamp_ns.to_ne_bytes());
        bytes.extend_from_slice(&event.reason.to_ne_bytes());
        bytes.extend_from_slice(&event.dry_run.to_ne_bytes());
        bytes.extend_from_slice(&event.list.to_ne_bytes());
        bytes.extend_from_slice(&event._pad.to_ne_bytes());
        assert_eq!(
            bytes.len(),
            std::mem::size_of::<api_shield_common::DropEvent>()
        );
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.source.to_string(), "192.0.2.9");
        assert_eq!(decoded.reason, Some(Reason::DropBanned));
        assert!(decoded.dry_run);
        assert_eq!(decoded.list, Some(3));
        assert!(decode(&bytes[..31]).is_none());
    }
}
