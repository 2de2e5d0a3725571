//! Checks of the policy tables that need no files: names that must exist or be unique. What
//! needs files (keys, schemas, OpenAPI documents) is checked when the policies are compiled.

use std::collections::HashSet;

use super::{
    model::Config,
    validate::{problem, Problem},
};

/// The first problem in `issuers`, `openapi` or the routes' policy tables.
pub(super) fn validate(config: &Config) -> Result<(), Problem> {
    let mut names = HashSet::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        let at = format!("issuers[{i}]");
        if issuer.name.is_empty() || !names.insert(issuer.name.as_str()) {
            return Err(problem(
                format!("{at}.name"),
                "names must be unique and not empty",
            ));
        }
        if issuer.issuer.is_empty() {
            return Err(problem(
                format!("{at}.issuer"),
                "the `iss` tokens carry; required",
            ));
        }
        if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
            return Err(problem(
                format!("{at}.audiences"),
                "list at least one audience",
            ));
        }
        if issuer.algorithms.is_empty() {
            return Err(problem(
                format!("{at}.algorithms"),
                "list the accepted algorithms",
            ));
        }
        if issuer.secret_file.is_some() && issuer.secret_env.is_some() {
            return Err(problem(
                format!("{at}.secret_env"),
                "give secret_file or secret_env, not both",
            ));
        }
    }
    for (i, route) in config.routes.iter().enumerate() {
        if let Some(auth) = &route.auth {
            for name in &auth.jwt {
                if !names.contains(name.as_str()) {
                    return Err(problem(
                        format!("routes[{i}].auth.jwt"),
                        format!("no issuer is named `{name}`"),
                    ));
                }
            }
        }
    }
    let escalation = &config.escalation;
    let mut rule_names = HashSet::new();
    for (i, rule) in escalation.rules.iter().enumerate() {
        let at = format!("escalation.rules[{i}]");
        if rule.name.is_empty() || !rule_names.insert(rule.name.as_str()) {
            return Err(problem(
                format!("{at}.name"),
                "names must be unique and not empty",
            ));
        }
        if rule.threshold == 0 {
            return Err(problem(format!("{at}.threshold"), "must be at least 1"));
        }
        if rule.window.is_zero() {
            return Err(problem(format!("{at}.window"), "must be more than zero"));
        }
        if rule.ban.is_zero() || rule.ban > escalation.max_ban_ttl {
            return Err(problem(
                format!("{at}.ban"),
                format!(
                    "must be more than zero and at most escalation.max_ban_ttl ({})",
                    humantime::format_duration(escalation.max_ban_ttl)
                ),
            ));
        }
    }
    if escalation.max_tracked_clients == 0 {
        return Err(problem(
            "escalation.max_tracked_clients",
            "must be at least 1",
        ));
    }
    let upstreams: HashSet<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    for (i, entry) in config.openapi.iter().enumerate() {
        if !upstreams.contains(entry.upstream.as_str()) {
            return Err(problem(
                format!("openapi[{i}].upstream"),
                format!("no upstream is named `{}`", entry.upstream),
            ));
        }
    }
    Ok(())
}
