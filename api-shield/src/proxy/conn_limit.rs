//! The limit on connections open at once per client address. Memory is bounded by the open
//! connections themselves: an address's entry goes when its last connection closes.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
};

/// Counts open connections per address.
#[derive(Debug, Default)]
pub struct ConnectionLimiter {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    /// At most `max` connections per address; 0 means no limit.
    pub fn new(max: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection from `ip`, or `None` when it has `max` open.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if self.max != 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ConnectionPermit {
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
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_per_address_and_frees_on_drop() {
        let limiter = ConnectionLimiter::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limiter.try_acquire(a).unwrap();
        let second = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none());
        assert!(
            limiter.try_acquire(b).is_some(),
            "other addresses are unaffected"
        );
        drop(first);
        assert!(limiter.try_acquire(a).is_some());
        drop(second);
        assert!(
            limiter.open.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}
