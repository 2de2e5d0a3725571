//! Reading a config file from disk, and checking it against the host it will run on.

use std::{fmt, os::unix::fs::MetadataExt as _, path::Path};

use super::{check_host_name, model::Config, parse, validate::problem, ConfigError, Secret};

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// What the config needs of this host that parsing cannot see: the fleet's and CrowdSec's
/// secrets can be read, and every interface the fast path attaches to exists. `check-config`, a reload and a start all refuse a config that fails it,
/// so a reload never accepts what the next start would refuse.
pub fn check_host(config: &Config) -> Result<(), ConfigError> {
    fleet_host(config)?;
    crowdsec_secrets(config)?;
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

/// What the `[fleet]` table needs of this host: its name in the fleet and the Redis password.
#[derive(Debug, Clone)]
pub struct FleetHost {
    /// `fleet.host`, or the system's host name.
    pub host: String,
    /// The password, read from its file or variable.
    pub password: Option<Password>,
}

/// A password: never printed.
#[derive(Clone)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Reads what the `[fleet]` table names on this host (none without the table): the password
/// file must be root's own and unreadable to others, the variable set, and the host name fit
/// for a fleet (a system host name that is not says to set `fleet.host`).
pub fn fleet_host(config: &Config) -> Result<Option<FleetHost>, ConfigError> {
    let Some(fleet) = &config.fleet else {
        return Ok(None);
    };
    let invalid = |key: &str, message: String| config.source.error(problem(key, message));
    let host = if let Some(host) = &fleet.host {
        host.clone()
    } else {
        {
            let name = nix::unistd::gethostname()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let short = name.split('.').next().unwrap_or_default().to_owned();
            check_host_name(&short).map_err(|e| {
                invalid(
                    "fleet.host",
                    format!("the system's host name will not do ({e}); set fleet.host"),
                )
            })?;
            short
        }
    };
    let password = fleet
        .password
        .as_ref()
        .map(|secret| read_secret(config, secret, "fleet.password_file", "fleet.password_env"))
        .transpose()?;
    Ok(Some(FleetHost { host, password }))
}

/// The secrets the `[crowdsec]` table names (none without the table): the bouncer key and,
/// with `report = true`, the machine's password, each from its root-only file or variable.
pub fn crowdsec_secrets(
    config: &Config,
) -> Result<Option<(Password, Option<Password>)>, ConfigError> {
    let Some(crowdsec) = &config.crowdsec else {
        return Ok(None);
    };
    let key = read_secret(
        config,
        &crowdsec.api_key,
        "crowdsec.api_key_file",
        "crowdsec.api_key_env",
    )?;
    let machine = crowdsec
        .report
        .as_ref()
        .map(|report| {
            read_secret(
                config,
                &report.password,
                "crowdsec.machine_password_file",
                "crowdsec.machine_password_env",
            )
        })
        .transpose()?;
    Ok(Some((key, machine)))
}

/// A secret's first line from its file (root's own, unreadable to others) or its variable
/// (set); errors name `file_key` or `env_key`.
fn read_secret(
    config: &Config,
    secret: &Secret,
    file_key: &str,
    env_key: &str,
) -> Result<Password, ConfigError> {
    let invalid = |key: &str, message: String| config.source.error(problem(key, message));
    match secret {
        Secret::Env(name) => Ok(Password(std::env::var(name).map_err(|_| {
            invalid(
                env_key,
                format!("the environment variable `{name}` is not set"),
            )
        })?)),
        Secret::File(path) => {
            let shown = path.display();
            let meta = std::fs::metadata(path)
                .map_err(|e| invalid(file_key, format!("cannot read `{shown}`: {e}")))?;
            let euid = nix::unistd::geteuid().as_raw();
            if meta.uid() != 0 && meta.uid() != euid {
                return Err(invalid(
                    file_key,
                    format!(
                        "`{shown}` belongs to uid {}, not root: chown it",
                        meta.uid()
                    ),
                ));
            }
            if meta.mode() & 0o077 != 0 {
                return Err(invalid(
                    file_key,
                    format!(
                        "`{shown}` is readable by others (mode {:o}); chmod 600 it",
                        meta.mode() & 0o777
                    ),
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(file_key, format!("cannot read `{shown}`: {e}")))?;
            let line = text.lines().next().unwrap_or_default().trim().to_owned();
            if line.is_empty() {
                return Err(invalid(file_key, format!("`{shown}` is empty")));
            }
            Ok(Password(line))
        }
    }
}
