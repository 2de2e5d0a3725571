//! Checks that types cannot express; each problem names its key.

use super::{
    guard_rails::{exact, GuardRails},
    model::{Config, PortSpec},
};

/// One problem with a value.
#[derive(Debug)]
pub struct Problem {
    /// Dotted key path, e.g. `fastpath.limiter.rate` or `fastpath.allow[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A problem with `key`.
pub fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        key: key.into(),
        message: message.into(),
    }
}

/// What fleet mode needs: the fast path (bans are shared at the NIC), and a `[fleet]` table
/// for any fleet-scoped rate limit.
fn validate_fleet(config: &Config) -> Result<(), Problem> {
    let fleet_limits = config
        .routes
        .iter()
        .map(|r| r.rate_limit.as_ref())
        .enumerate()
        .map(|(i, l)| (format!("routes[{i}].rate_limit.scope"), l))
        .chain(config.openapi.iter().enumerate().map(|(i, o)| {
            (
                format!("openapi[{i}].rate_limit.scope"),
                o.rate_limit.as_ref(),
            )
        }));
    for (key, limit) in fleet_limits {
        if config.fleet.is_none() && limit.is_some_and(|l| l.scope == super::RateScope::Fleet) {
            return Err(problem(
                key,
                "`scope = \"fleet\"` shares the budget through the fleet: add a [fleet] table",
            ));
        }
    }
    if config.fleet.is_some() && !config.fastpath.enabled {
        return Err(problem(
            "fleet",
            "a fleet shares bans at the NIC: it needs fastpath.enabled",
        ));
    }
    if !config.blocklists.is_empty() && !config.fastpath.enabled {
        return Err(problem(
            "blocklists",
            "blocklists are enforced at the NIC: they need fastpath.enabled",
        ));
    }
    let max_lists = api_shield_common::maps::MAX_LISTS as usize - 1;
    if config.blocklists.len() > max_lists {
        return Err(problem(
            "blocklists",
            format!("at most {max_lists} lists (the kernel counts each in a slot of its own)"),
        ));
    }
    for (i, list) in config.blocklists.iter().enumerate() {
        if config.blocklists[..i].iter().any(|l| l.name == list.name) {
            return Err(problem(
                format!("blocklists[{i}].name"),
                format!("`{}` names two lists", list.name),
            ));
        }
        if list.cache_file.is_some()
            && config.blocklists[..i]
                .iter()
                .any(|l| l.cache_file == list.cache_file)
        {
            return Err(problem(
                format!("blocklists[{i}].cache_file"),
                "two lists cannot share a cache file",
            ));
        }
    }
    if config.crowdsec.is_some() && !config.fastpath.enabled {
        return Err(problem(
            "crowdsec",
            "CrowdSec decisions are enforced at the NIC: the bouncer needs fastpath.enabled",
        ));
    }
    Ok(())
}

/// The allow and deny tables' sizes, and lists that fit them.
fn validate_table_sizes(fastpath: &super::FastpathConfig) -> Result<(), Problem> {
    for (list, nets, max) in [
        ("allow", &fastpath.allow, fastpath.max_allow),
        ("deny", &fastpath.deny, fastpath.max_deny),
    ] {
        if !(1024..=16_777_216).contains(&max) {
            return Err(problem(
                format!("fastpath.max_{list}"),
                "must be between 1024 and 16777216",
            ));
        }
        if nets.len() > max as usize {
            return Err(problem(
                format!("fastpath.{list}"),
                format!("at most {max} entries (fastpath.max_{list})"),
            ));
        }
    }
    Ok(())
}

/// The first problem found, in file order of the tables.
pub(crate) fn validate(config: &Config) -> Result<(), Problem> {
    let fastpath = &config.fastpath;
    if fastpath.enabled && fastpath.interfaces.is_empty() {
        return Err(problem(
            "fastpath.interfaces",
            "name at least one interface",
        ));
    }
    for (i, name) in fastpath.interfaces.iter().enumerate() {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ']) {
            return Err(problem(
                format!("fastpath.interfaces[{i}]"),
                format!("`{name}` is not a valid interface name"),
            ));
        }
    }
    if !fastpath.pin_dir.is_absolute() {
        return Err(problem(
            "fastpath.pin_dir",
            "must be an absolute path on a bpffs",
        ));
    }
    if !fastpath.runtime_dir.is_absolute() {
        return Err(problem("fastpath.runtime_dir", "must be an absolute path"));
    }
    validate_table_sizes(fastpath)?;
    validate_rules(config)?;
    validate_fleet(config)?;
    let limiter = &fastpath.limiter;
    if limiter.rate == 0 {
        return Err(problem(
            "fastpath.limiter.rate",
            "must be at least 1 packet per second",
        ));
    }
    if limiter.burst == 0 {
        return Err(problem(
            "fastpath.limiter.burst",
            "must be at least 1 packet",
        ));
    }
    if limiter.ipv6_prefix == 0 || limiter.ipv6_prefix > 128 {
        return Err(problem(
            "fastpath.limiter.ipv6_prefix",
            "must be between 1 and 128",
        ));
    }
    if !(1024..=16_777_216).contains(&fastpath.max_bans) {
        return Err(problem(
            "fastpath.max_bans",
            "must be between 1024 and 16777216",
        ));
    }
    if limiter.max_sources < 1024 {
        return Err(problem(
            "fastpath.limiter.max_sources",
            "must be at least 1024",
        ));
    }
    if limiter.untracked_rate == 0 {
        return Err(problem(
            "fastpath.limiter.untracked_rate",
            "must be at least 1",
        ));
    }
    if limiter.untracked_burst == 0 {
        return Err(problem(
            "fastpath.limiter.untracked_burst",
            "must be at least 1",
        ));
    }
    for (proto, ports) in [("tcp", &limiter.protect.tcp), ("udp", &limiter.protect.udp)] {
        for (i, PortSpec { first, last }) in ports.iter().enumerate() {
            if *first == 0 || first > last {
                return Err(problem(
                    format!("fastpath.limiter.protect.{proto}[{i}]"),
                    format!("`{first}-{last}` is not a port range within 1-65535"),
                ));
            }
        }
    }
    if fastpath.events.interval.is_zero() {
        return Err(problem(
            "fastpath.events.interval",
            "must be more than zero",
        ));
    }
    super::validate_proxy::validate(config)?;
    super::validate_policy::validate(config)
}

/// Host bits anywhere a network is written; deny rules within the guard rails and not inside
/// the allow list (where they would drop nothing).
fn validate_rules(config: &Config) -> Result<(), Problem> {
    let fastpath = &config.fastpath;
    let guard = &fastpath.guard;
    if guard.min_prefix_v4 > 32 {
        return Err(problem(
            "fastpath.guard.min_prefix_v4",
            "must be between 0 and 32",
        ));
    }
    if guard.min_prefix_v6 > 128 {
        return Err(problem(
            "fastpath.guard.min_prefix_v6",
            "must be between 0 and 128",
        ));
    }
    for (list, nets) in [
        ("fastpath.allow", &fastpath.allow),
        ("fastpath.deny", &fastpath.deny),
        ("escalation.never_ban", &config.escalation.never_ban),
    ] {
        for (i, net) in nets.iter().enumerate() {
            if let Err(error) = exact(*net, &net.to_string()) {
                return Err(problem(format!("{list}[{i}]"), error.to_string()));
            }
        }
    }
    for (i, net) in fastpath.deny.iter().enumerate() {
        let key = format!("fastpath.deny[{i}]");
        guard
            .check_breadth(net)
            .and_then(|()| GuardRails::check_allow(net, &fastpath.allow))
            .map_err(|error| problem(key, error.to_string()))?;
    }
    Ok(())
}
