//! Reading a config file from disk, and checking it against the host it will run on.

use std::path::Path;

use super::{model::Config, parse, validate::problem, ConfigError};

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// What the config needs of this host that parsing cannot see: every interface the fast path
/// attaches to exists. `check-config`, a reload and a start all refuse a config that fails it,
/// so a reload never accepts what the next start would refuse.
pub fn check_host(config: &Config) -> Result<(), ConfigError> {
    if !config.fastpath.enabled {
        return Ok(());
    }
    for (i, name) in config.fastpath.interfaces.iter().enumerate() {
        if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
            return Err(config.source.error(problem(
                format!("fastpath.interfaces[{i}]"),
                format!("interface `{name}` does not exist on this host (ip link shows the ones that do)"),
            )));
        }
    }
    Ok(())
}
