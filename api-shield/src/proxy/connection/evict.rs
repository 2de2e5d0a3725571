//! Closing the connections of a source the moment it is banned. A ban drops the source's next
//! packets at the NIC, but connections it already has open would otherwise sit until their
//! idle timeout (holding a stop's drain for as long). Every client connection watches the
//! networks banned while it is open and closes as soon as one covers its client.
//!
//! Bans are numbered; a connection remembers the last number it has seen when it opens and
//! looks only at later ones, so an old ban lifted since never closes a new connection. The
//! list keeps the last [`KEPT`] bans: a connection would have to sleep through that many to
//! miss one.

use std::{collections::VecDeque, net::IpAddr, sync::Arc};

use ipnet::IpNet;
use tokio::sync::watch;

/// Recent bans kept for connections to look at.
const KEPT: usize = 4096;

#[derive(Debug, Default)]
struct Recent {
    /// Number of the newest ban.
    last: u64,
    /// The newest bans with their numbers, oldest first.
    bans: VecDeque<(u64, IpNet)>,
}

/// Where bans are announced to open connections.
#[derive(Debug)]
pub(crate) struct Evictions {
    recent: watch::Sender<Recent>,
}

impl Default for Evictions {
    fn default() -> Self {
        Evictions {
            recent: watch::channel(Recent::default()).0,
        }
    }
}

impl Evictions {
    /// Closes the open connections whose client is in `net`.
    pub(crate) fn evict(&self, net: IpNet) {
        self.recent.send_modify(|recent| {
            recent.last += 1;
            recent.bans.push_back((recent.last, net));
            if recent.bans.len() > KEPT {
                recent.bans.pop_front();
            }
        });
    }

    /// A watch for one connection, from now on.
    pub(crate) fn watch(self: &Arc<Self>) -> Eviction {
        let receiver = self.recent.subscribe();
        let seen = receiver.borrow().last;
        Eviction { receiver, seen }
    }
}

/// One connection's view of the bans made since it opened.
#[derive(Debug)]
pub(crate) struct Eviction {
    receiver: watch::Receiver<Recent>,
    seen: u64,
}

impl Eviction {
    /// Resolves when a ban made since the connection opened covers `client`; never while no
    /// such ban comes (or once the announcer is gone).
    pub(crate) async fn banned(&mut self, client: IpAddr) {
        let client = IpNet::from(client);
        loop {
            if self.receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
            let recent = self.receiver.borrow_and_update();
            let hit = recent
                .bans
                .iter()
                .filter(|(number, _)| *number > self.seen)
                .any(|(_, net)| crate::config::covers(net, &client));
            self.seen = recent.last;
            if hit {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    // Paused time: the 50 ms wait below passes only once nothing else can run, so it proves
    // that nothing woke the watch, without depending on the machine's speed.
    #[tokio::test(start_paused = true)]
    async fn a_ban_made_later_closes_and_an_earlier_one_does_not() {
        let evictions = Arc::new(Evictions::default());
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        evictions.evict("203.0.113.0/24".parse().unwrap());
        let mut watch = evictions.watch();
        // The ban before the connection opened is not its concern; another source's is not.
        evictions.evict("198.51.100.1/32".parse().unwrap());
        let waited = tokio::time::timeout(Duration::from_millis(50), watch.banned(client)).await;
        assert!(waited.is_err(), "closed by a ban that does not cover it");
        evictions.evict("::ffff:203.0.113.7/128".parse().unwrap());
        tokio::time::timeout(Duration::from_secs(5), watch.banned(client))
            .await
            .expect("closed by the ban covering it");
    }
}
