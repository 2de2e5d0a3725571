//! `api-shield key new`: a fresh random API key, printed once, with the line to paste into the
//! config's `keys = [ ... ]` array, which stores only its SHA-256.

use anyhow::{Context as _, Result};
use base64::Engine as _;

use crate::policy::auth::api_key::{hex, sha256};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Make a new key.
    ///
    /// Example: api-shield key new --id ci --scopes orders:read,orders:write
    New(NewArgs),
}

/// `key new` arguments.
#[derive(Debug, clap::Args)]
pub(super) struct NewArgs {
    /// Its id (logs, rate limits).
    #[arg(long, default_value = "key")]
    id: String,
    /// Scopes it grants, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
}

/// Prints the key and its config line.
pub(super) fn run(args: &Args) -> Result<()> {
    let Command::New(args) = &args.command;
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .ok()
        .context("the system random source failed")?;
    let key = format!(
        "ask_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let scopes: Vec<String> = args.scopes.iter().map(|s| toml_string(s)).collect();
    println!("key (shown once, give it to the client): {key}");
    println!("add this line inside `keys = [ ... ]` under [api_keys] in the config:");
    println!(
        "{}",
        entry_line(&args.id, &hex(&sha256(key.as_bytes())), &scopes)
    );
    Ok(())
}

/// One element of the `keys = [ ... ]` array, as the default config writes them.
fn entry_line(id: &str, sha256_hex: &str, scopes: &[String]) -> String {
    format!(
        "  {{ id = {}, sha256 = \"{sha256_hex}\", scopes = [{}] }},",
        toml_string(id),
        scopes.join(", ")
    )
}

/// A TOML basic string (JSON's escapes are a subset TOML accepts).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_line_pastes_into_the_default_config() {
        let default = include_str!("../../../config/api-shield.toml");
        let line = entry_line(
            "ops \"prod\"",
            &"ab".repeat(32),
            &[toml_string("admin"), toml_string("orders:read")],
        );
        let pasted = default.replacen("keys = [\n", &format!("keys = [\n{line}\n"), 1);
        assert_ne!(pasted, default, "the default config has a `keys = [` line");
        let config = crate::config::parse(&pasted, std::path::Path::new("api-shield.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{line}"));
        let keys = &config.api_keys.keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].id, "ops \"prod\"");
        assert_eq!(keys[0].scopes, ["admin", "orders:read"]);
    }
}
