//! The command line: one file per subcommand, each with `run(args) -> anyhow::Result<()>`.

mod ban;
mod bans;
mod check_config;
mod control_args;
mod demo_api;
mod detach;
mod generate;
mod key;
mod maps_args;
mod reload;
mod run;
mod stats;
mod status;
mod token;
mod top;
mod unban;
mod uninstall_maps;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for a bad config or bad arguments (sysexits `EX_USAGE`).
pub const EX_USAGE: u8 = 64;

/// api-shield: XDP flood filter and API gateway for Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "api-shield", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    ///
    /// Example: api-shield run --config /etc/api-shield/api-shield.toml
    Run(run::Args),
    /// Check a config file; exit 64 naming file, line and key when it is bad.
    ///
    /// Example: api-shield check-config config/api-shield.toml
    CheckConfig(check_config::Args),
    /// Ban an address or network at the NIC.
    ///
    /// Example: api-shield ban 203.0.113.7 --ttl 15m --reason "credential stuffing"
    Ban(ban::Args),
    /// Lift a ban.
    ///
    /// Example: api-shield unban 203.0.113.7
    Unban(unban::Args),
    /// List bans in force.
    ///
    /// Example: api-shield bans --json
    Bans(bans::Args),
    /// Show the XDP counters and attach modes.
    ///
    /// Example: api-shield stats --json
    Stats(stats::Args),
    /// Show the running daemon: version, uptime, attachments, listeners, routes, bans.
    ///
    /// Example: api-shield status
    Status(status::Args),
    /// Make the running daemon read its config again (a bad config is refused, the running one
    /// stays).
    ///
    /// Example: api-shield reload
    Reload(reload::Args),
    /// A live view of the sources being dropped and the busiest routes (q quits).
    ///
    /// Example: api-shield top --interval 2
    Top(top::Args),
    /// Take the XDP program off interfaces while no daemon runs, keeping bans and counters.
    ///
    /// Example: api-shield detach eth0
    Detach(detach::Args),
    /// Detach everywhere and remove every pinned map and link (bans and counters too).
    ///
    /// Example: api-shield uninstall-maps
    UninstallMaps(uninstall_maps::Args),
    /// Serve a small demo JSON API to put the shield in front of (for trying it out).
    ///
    /// Example: api-shield demo-api --bind 127.0.0.1:9000
    DemoApi(demo_api::Args),
    /// Generate the man page or shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::Args),
    /// Make API keys: the key is printed once, the config keeps only its hash.
    ///
    /// Example: api-shield key new --id ci --scopes orders:read
    Key(key::Args),
    /// Mint bearer tokens with a configured issuer's secret or signing key, for testing.
    ///
    /// Example: api-shield token new --issuer demo --sub alice --scopes orders:read --ttl 1h
    Token(token::Args),
}

impl Cli {
    /// Whether the command serves (the daemon, the demo API) rather than prints and exits.
    pub fn serves(&self) -> bool {
        matches!(self.command, Command::Run(_) | Command::DemoApi(_))
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    execute(Cli::parse())
}

/// Runs a parsed command line.
pub fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Ban(args) => ban::run(&args),
        Command::Unban(args) => unban::run(&args),
        Command::Bans(args) => bans::run(&args),
        Command::Stats(args) => stats::run(&args),
        Command::DemoApi(args) => demo_api::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Reload(args) => reload::run(&args),
        Command::Top(args) => top::run(&args),
        Command::Key(args) => key::run(&args),
        Command::Token(args) => token::run(&args),
        Command::Detach(args) => detach::run(&args),
        Command::UninstallMaps(args) => uninstall_maps::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", render(&error));
            let usage = error.chain().any(|cause| {
                cause.downcast_ref::<crate::config::ConfigError>().is_some()
                    || cause.downcast_ref::<crate::fastpath::AddrError>().is_some()
                    || cause.downcast_ref::<crate::config::GuardError>().is_some()
                    || cause
                        .downcast_ref::<crate::proxy::connection::server::ProxyError>()
                        .is_some_and(|e| {
                            matches!(e, crate::proxy::connection::server::ProxyError::Config(_))
                        })
                    || cause
                        .downcast_ref::<crate::fastpath::FastpathError>()
                        .is_some_and(|e| matches!(e, crate::fastpath::FastpathError::Refused(_)))
                    || cause.downcast_ref::<humantime::DurationError>().is_some()
                    || cause
                        .downcast_ref::<crate::control::client::ControlError>()
                        .is_some_and(|e| {
                            matches!(e, crate::control::client::ControlError::Refused(_))
                        })
            });
            ExitCode::from(if usage { EX_USAGE } else { 1 })
        }
    }
}

/// The error and its causes on one line, each once.
fn render(error: &anyhow::Error) -> String {
    crate::telemetry::error_chain(error.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let error = anyhow::Error::new(crate::config::ConfigError::Read {
            path: "/etc/x.toml".into(),
            source: io,
        })
        .context("loading");
        let text = render(&error);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
        assert!(text.starts_with("loading: /etc/x.toml"), "{text}");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render(&plain), "outer: inner");
    }
}
