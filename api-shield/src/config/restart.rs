//! The settings a reload cannot apply to a running daemon: they are read once at start (the
//! interfaces the program is attached to, the pin and runtime directories, the sockets bound,
//! the runtime's worker count). A reload that changes them applies everything else and says
//! which of these wait for the next restart; `status` and `check-config` show them too.

use super::model::Config;

/// The keys whose value differs between `running` and `new` and that need a restart.
pub fn pending_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&running.fastpath, &new.fastpath);
    let checks: [(&'static str, bool); 18] = [
        ("fastpath.enabled", a.enabled != b.enabled),
        ("fastpath.interfaces", a.interfaces != b.interfaces),
        ("fastpath.mode", a.mode != b.mode),
        ("fastpath.pin_dir", a.pin_dir != b.pin_dir),
        ("fastpath.runtime_dir", a.runtime_dir != b.runtime_dir),
        ("fastpath.max_bans", a.max_bans != b.max_bans),
        ("fastpath.max_allow", a.max_allow != b.max_allow),
        ("fastpath.max_deny", a.max_deny != b.max_deny),
        (
            "fastpath.limiter.max_sources",
            a.limiter.max_sources != b.limiter.max_sources,
        ),
        ("listeners", running.listeners != new.listeners),
        ("admin", running.admin != new.admin),
        ("access_log", running.access_log != new.access_log),
        ("fleet", running.fleet != new.fleet),
        ("crowdsec", running.crowdsec != new.crowdsec),
        (
            "control.disabled",
            running.control.disabled != new.control.disabled,
        ),
        ("proxy.workers", running.proxy.workers != new.proxy.workers),
        (
            "proxy.max_connections",
            running.proxy.max_connections != new.proxy.max_connections,
        ),
        (
            "proxy.max_connections_per_ip",
            running.proxy.max_connections_per_ip != new.proxy.max_connections_per_ip,
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        super::super::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn names_what_waits_for_a_restart_and_nothing_else() {
        let running = config("[fastpath]\ninterfaces = [\"lo\"]\n");
        assert!(pending_restart(&running, &running).is_empty());
        let new = config(
            "[fastpath]\ninterfaces = [\"lo\", \"eth9\"]\ndry_run = true\n[proxy]\nworkers = 3\n",
        );
        assert_eq!(
            pending_restart(&running, &new),
            vec!["fastpath.interfaces", "proxy.workers"]
        );
    }
}
