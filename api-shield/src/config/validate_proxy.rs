//! Checks of the L7 configuration; each problem names its key.

use std::collections::HashSet;

use super::{
    model::Config,
    validate::{problem, Problem},
};
use crate::pattern::OriginPattern;

/// The first problem in `listeners`, `upstreams`, `routes` or `proxy`.
pub(super) fn validate(config: &Config) -> Result<(), Problem> {
    listeners(config)?;
    let upstreams = upstreams(config)?;
    routes(config, &upstreams)?;
    if let Some(name) = &config.proxy.default_upstream {
        if !upstreams.contains(name.as_str()) {
            return Err(problem(
                "proxy.default_upstream",
                format!("no upstream is named `{name}`"),
            ));
        }
    }
    proxy(config)
}

fn listeners(config: &Config) -> Result<(), Problem> {
    let mut binds = HashSet::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        for (field, bind) in [
            ("bind", Some(&listener.bind)),
            ("redirect.bind", listener.redirect.as_ref().map(|r| &r.bind)),
        ] {
            let Some(&addr) = bind else { continue };
            // Port 0 asks the kernel for a free port: never a clash.
            if addr.port() != 0 && !binds.insert(addr) {
                return Err(problem(
                    format!("{key}.{field}"),
                    format!("{addr} is used twice"),
                ));
            }
        }
        if let Some(canonical) = listener
            .redirect
            .as_ref()
            .and_then(|r| r.canonical_host.as_deref())
        {
            let host_name = !canonical.is_empty()
                && canonical.len() <= 253
                && canonical
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !host_name && canonical.parse::<std::net::IpAddr>().is_err() {
                return Err(problem(
                    format!("{key}.redirect.canonical_host"),
                    format!("`{canonical}` is not a host name or IP address (no port, no scheme)"),
                ));
            }
        }
        if listener.proxy_protocol && config.proxy.trusted_proxies.is_empty() {
            return Err(problem(
                format!("{key}.proxy_protocol"),
                "name the load balancers it accepts the header from in proxy.trusted_proxies",
            ));
        }
        let tls = &listener.tls;
        if tls.adhoc != tls.certificates.is_empty() {
            return Err(problem(
                format!("{key}.tls"),
                "set either `adhoc = true` or `certificates` (one or more cert/key pairs)",
            ));
        }
    }
    Ok(())
}

fn upstreams(config: &Config) -> Result<HashSet<&str>, Problem> {
    let mut upstreams = HashSet::new();
    for (i, upstream) in config.upstreams.iter().enumerate() {
        let key = format!("upstreams[{i}]");
        if !upstreams.insert(upstream.name.as_str()) {
            return Err(problem(
                format!("{key}.name"),
                format!("`{}` is used twice", upstream.name),
            ));
        }
    }
    Ok(upstreams)
}

fn routes(config: &Config, upstreams: &HashSet<&str>) -> Result<(), Problem> {
    let mut routes = HashSet::new();
    for (i, route) in config.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        if !routes.insert(route.name.as_str()) {
            return Err(problem(
                format!("{key}.name"),
                format!("`{}` is used twice", route.name),
            ));
        }
        for method in route.methods.iter().flatten() {
            check_method(&format!("{key}.methods"), method)?;
        }
        if !upstreams.contains(route.upstream.as_str()) {
            return Err(problem(
                format!("{key}.upstream"),
                format!("no upstream is named `{}`", route.upstream),
            ));
        }
        if let Some(cors) = &route.cors {
            if cors.origins.is_empty() {
                return Err(problem(
                    format!("{key}.cors.origins"),
                    "list at least one origin",
                ));
            }
            for pattern in &cors.origins {
                if cors.credentials && *pattern == OriginPattern::Any {
                    return Err(problem(format!("{key}.cors.credentials"), "credentials cannot be allowed for the wildcard origin \"*\": list the origins"));
                }
            }
            for method in &cors.methods {
                check_method(&format!("{key}.cors.methods"), method)?;
            }
        }
    }
    Ok(())
}

fn proxy(config: &Config) -> Result<(), Problem> {
    let proxy = &config.proxy;
    if proxy.max_body_bytes == 0 {
        return Err(problem("proxy.max_body_bytes", "must be more than zero"));
    }
    if proxy.request_timeout.is_zero() {
        return Err(problem("proxy.request_timeout", "must be more than zero"));
    }
    if proxy.header_timeout.is_zero() {
        return Err(problem("proxy.header_timeout", "must be more than zero"));
    }
    if proxy.idle_timeout <= proxy.request_timeout {
        return Err(problem(
            "proxy.idle_timeout",
            "must be longer than proxy.request_timeout (a client waiting for its answer moves no bytes)",
        ));
    }
    if proxy.max_concurrent_streams == 0 {
        return Err(problem(
            "proxy.max_concurrent_streams",
            "must be more than zero",
        ));
    }
    if !(1..=1000).contains(&proxy.max_headers) {
        return Err(problem("proxy.max_headers", "must be between 1 and 1000"));
    }
    if !(1..=super::proxy_model::MAX_WORKERS).contains(&proxy.workers) {
        return Err(problem(
            "proxy.workers",
            format!("must be between 1 and {}", super::proxy_model::MAX_WORKERS),
        ));
    }
    if !(8192..=1024 * 1024).contains(&proxy.max_header_bytes) {
        return Err(problem(
            "proxy.max_header_bytes",
            "must be between 8192 and 1048576",
        ));
    }
    Ok(())
}

fn check_method(key: &str, method: &str) -> Result<(), Problem> {
    let valid = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if valid {
        Ok(())
    } else {
        Err(problem(
            key,
            format!("`{method}` is not an upper-case HTTP method"),
        ))
    }
}
