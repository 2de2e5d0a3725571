//! The limits on connections open at once: per client address, and in total (so a flood of
//! addresses cannot take every file descriptor the upstreams, the control socket and key
//! fetches need). Memory is bounded by the open connections themselves: an address's entry goes
//! when its last connection closes.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

/// Counts open connections per address and in total.
#[derive(Debug, Default)]
pub(crate) struct ConnectionLimiter {
    max_per_ip: usize,
    max_total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address has `max_connections_per_ip` open.
    PerAddress,
    /// `max_connections` are open.
    Total,
}

impl Refused {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refused::PerAddress => "per_address",
            Refused::Total => "total",
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// At most `max_per_ip` connections per address and `max_total` in all; 0 means no limit.
    pub(crate) fn new(max_per_ip: usize, max_total: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            max_per_ip,
            max_total,
            open: Mutex::default(),
        })
    }

    /// A permit for one more connection from `ip`, or why not.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refused> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_total != 0 && open.total >= self.max_total {
            return Err(Refused::Total);
        }
        let count = open.by_ip.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *count >= self.max_per_ip {
            return Err(Refused::PerAddress);
        }
        *count += 1;
        open.total += 1;
        crate::telemetry::metrics()
            .connections
            .open
            .set(i64::try_from(open.total).unwrap_or(i64::MAX));
        Ok(ConnectionPermit {
            limiter: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.by_ip.remove(&self.ip);
            }
            open.total -= 1;
            crate::telemetry::metrics()
                .connections
                .open
                .set(i64::try_from(open.total).unwrap_or(i64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_per_address_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(2, 0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limiter.try_acquire(a).unwrap();
        let second = limiter.try_acquire(a).unwrap();
        assert_eq!(limiter.try_acquire(a).unwrap_err(), Refused::PerAddress);
        assert!(
            limiter.try_acquire(b).is_ok(),
            "other addresses are unaffected"
        );
        drop(first);
        assert!(limiter.try_acquire(a).is_ok());
        drop(second);
        let open = limiter.open.lock().unwrap();
        assert!(open.by_ip.is_empty(), "no entry outlives its connections");
        assert_eq!(open.total, 0);
    }

    #[test]
    fn the_total_limit_holds_across_addresses_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(0, 3);
        let permits: Vec<_> = (1..=3u8)
            .map(|n| limiter.try_acquire(IpAddr::from([192, 0, 2, n])).unwrap())
            .collect();
        let fourth: IpAddr = "192.0.2.4".parse().unwrap();
        assert_eq!(limiter.try_acquire(fourth).unwrap_err(), Refused::Total);
        drop(permits);
        assert!(limiter.try_acquire(fourth).is_ok());
    }
}
