//! Why the program passed or dropped a packet: the index into the `STATS` counters.

/// Every verdict the program reaches, one counter each.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The `enabled` flag is off.
    PassDisabled = 0,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    PassNotIp = 1,
    /// Truncated or malformed headers: passed for the kernel to judge.
    PassMalformed = 2,
    /// Source in the allow list.
    PassAllowed = 3,
    /// Protocol/port not protected by the limiter.
    PassUnprotected = 4,
    /// Within the source's budget.
    PassWithinLimit = 5,
    /// Source in the deny list.
    DropDenied = 6,
    /// Source banned.
    DropBanned = 7,
    /// Source over its budget.
    DropRateLimited = 8,
    /// Source could not be tracked and the shared untracked budget is spent.
    DropUntracked = 9,
    /// Would have been `DropDenied` (dry run).
    DryRunDenied = 10,
    /// Would have been `DropBanned` (dry run).
    DryRunBanned = 11,
    /// Would have been `DropRateLimited` (dry run).
    DryRunRateLimited = 12,
    /// Would have been `DropUntracked` (dry run).
    DryRunUntracked = 13,
    /// A TCP segment of a connection the kernel knows: never charged to the source's budget.
    PassFlow = 14,
    /// A TCP segment (not a SYN) of no connection the kernel knows, to a protected port.
    DropNoFlow = 15,
    /// Would have been `DropNoFlow` (dry run).
    DryRunNoFlow = 16,
    /// A bare SYN from a source that has not completed a handshake, answered at the NIC with the
    /// kernel's SYN cookie (`XDP_TX`) instead of being passed to the stack or dropped.
    AnswerSynCookie = 17,
}

impl Reason {
    /// Number of reasons, the size of the `STATS` map.
    pub const COUNT: u32 = 18;

    /// All reasons in index order.
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::PassDisabled,
        Reason::PassNotIp,
        Reason::PassMalformed,
        Reason::PassAllowed,
        Reason::PassUnprotected,
        Reason::PassWithinLimit,
        Reason::DropDenied,
        Reason::DropBanned,
        Reason::DropRateLimited,
        Reason::DropUntracked,
        Reason::DryRunDenied,
        Reason::DryRunBanned,
        Reason::DryRunRateLimited,
        Reason::DryRunUntracked,
        Reason::PassFlow,
        Reason::DropNoFlow,
        Reason::DryRunNoFlow,
        Reason::AnswerSynCookie,
    ];

    /// The dry-run twin of a drop reason (`self` for pass reasons).
    #[inline(always)]
    pub const fn dry_run(self) -> Reason {
        match self {
            Reason::DropDenied => Reason::DryRunDenied,
            Reason::DropBanned => Reason::DryRunBanned,
            Reason::DropRateLimited => Reason::DryRunRateLimited,
            Reason::DropUntracked => Reason::DryRunUntracked,
            Reason::DropNoFlow => Reason::DryRunNoFlow,
            other => other,
        }
    }

    /// The reason for an index, if any.
    pub const fn from_index(index: u32) -> Option<Reason> {
        if index < Self::COUNT {
            Some(Self::ALL[index as usize])
        } else {
            None
        }
    }

    /// What the program did: `pass`, `drop`, `dry_run` (counted, not dropped) or `answer`
    /// (answered at the NIC, the packet itself consumed).
    pub const fn action(self) -> &'static str {
        match self {
            Reason::PassDisabled
            | Reason::PassNotIp
            | Reason::PassMalformed
            | Reason::PassAllowed
            | Reason::PassUnprotected
            | Reason::PassWithinLimit
            | Reason::PassFlow => "pass",
            Reason::DropDenied
            | Reason::DropBanned
            | Reason::DropRateLimited
            | Reason::DropUntracked
            | Reason::DropNoFlow => "drop",
            Reason::DryRunDenied
            | Reason::DryRunBanned
            | Reason::DryRunRateLimited
            | Reason::DryRunUntracked
            | Reason::DryRunNoFlow => "dry_run",
            Reason::AnswerSynCookie => "answer",
        }
    }

    /// Stable snake_case name of the cause, used in stats output and metric labels.
    pub const fn cause(self) -> &'static str {
        match self {
            Reason::PassDisabled => "disabled",
            Reason::PassNotIp => "not_ip",
            Reason::PassMalformed => "malformed",
            Reason::PassAllowed => "allowed",
            Reason::PassUnprotected => "unprotected",
            Reason::PassWithinLimit => "within_limit",
            Reason::DropDenied | Reason::DryRunDenied => "denied",
            Reason::DropBanned | Reason::DryRunBanned => "banned",
            Reason::DropRateLimited | Reason::DryRunRateLimited => "rate_limited",
            Reason::DropUntracked | Reason::DryRunUntracked => "untracked_over_budget",
            Reason::PassFlow => "flow",
            Reason::DropNoFlow | Reason::DryRunNoFlow => "no_flow",
            Reason::AnswerSynCookie => "syn_cookie",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_round_trip() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32);
            assert_eq!(Reason::from_index(i as u32), Some(*r));
        }
        assert_eq!(Reason::from_index(Reason::COUNT), None);
    }

    #[test]
    fn dry_run_twins_keep_the_cause() {
        for r in Reason::ALL {
            assert_eq!(r.dry_run().cause(), r.cause());
            if r.action() == "drop" {
                assert_eq!(r.dry_run().action(), "dry_run");
            }
        }
    }
}
