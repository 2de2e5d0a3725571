//! The open-file limit: raised at start from the soft to the hard limit (as nginx's
//! `worker_rlimit_nofile` and Go's runtime do), since every proxied connection holds a client
//! and an upstream descriptor, and a warning when `proxy.max_connections` cannot fit in it.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything but client connections: listeners, the control socket,
/// BPF maps and programs, key fetches, logs.
const RESERVED: u64 = 256;

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub(crate) fn raise_open_files() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|errno| tracing::warn!(%errno, "cannot read the open-file limit"))
        .ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            Some(hard)
        }
        Err(errno) => {
            tracing::warn!(%errno, soft, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// Warns when `max_connections` (0: unlimited) proxied connections could run out of
/// descriptors under `limit`.
pub(crate) fn check_fits(max_connections: usize, limit: u64) {
    let needed = fds_needed(max_connections);
    if needed.is_none_or(|needed| needed > limit) {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            "proxy.max_connections can exhaust the open-file limit (each connection needs a \
             client and an upstream descriptor): lower it or raise LimitNOFILE"
        );
    }
}

fn fds_needed(max_connections: usize) -> Option<u64> {
    if max_connections == 0 {
        return None;
    }
    u64::try_from(max_connections)
        .ok()
        .map(|n| n.saturating_mul(2).saturating_add(RESERVED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_counts_twice_plus_a_reserve_and_unlimited_never_fits() {
        assert_eq!(fds_needed(10_000), Some(20_256));
        assert_eq!(fds_needed(0), None);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let now = raise_open_files().unwrap();
        assert!(now >= soft);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, now);
    }
}
