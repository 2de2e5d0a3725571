//! The service manager's side of the daemon (`Type=notify`): READY when serving, RELOADING
//! (with the monotonic time systemd 253+ asks for) then READY around a reload, STOPPING when
//! stopping, and WATCHDOG pings at half the configured interval from the runtime, so a stuck
//! runtime gets the service restarted. Without `NOTIFY_SOCKET` every call does nothing.

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager");
    }
}

/// Startup (or a reload) is done.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(error) => tracing::warn!(%error, "cannot read the monotonic clock for RELOADING"),
    }
}

/// The daemon is stopping.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog when the service manager asked for it (`WatchdogSec=`).
pub(crate) fn spawn_watchdog() -> Option<JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()? / 2;
    tracing::info!(
        interval_ms = interval.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
