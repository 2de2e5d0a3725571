//! `api-shield key new`: a fresh random API key, printed once, with the `[[api_keys.keys]]`
//! line that stores only its SHA-256.

use anyhow::{Context as _, Result};
use base64::Engine as _;

use crate::policy::auth::api_key::{hex, sha256};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
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
pub struct NewArgs {
    /// Its id (logs, rate limits).
    #[arg(long, default_value = "key")]
    id: String,
    /// Scopes it grants, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
}

/// Prints the key and its config line.
pub fn run(args: &Args) -> Result<()> {
    let Command::New(args) = &args.command;
    let mut random = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .ok()
        .context("the system random source failed")?;
    let key = format!(
        "ask_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    );
    let scopes: Vec<String> = args.scopes.iter().map(|s| format!("{s:?}")).collect();
    println!("key (shown once, give it to the client): {key}");
    println!("add to [api_keys] in the config:");
    println!(
        "[[api_keys.keys]]\nid = {:?}\nsha256 = \"{}\"\nscopes = [{}]",
        args.id,
        hex(&sha256(key.as_bytes())),
        scopes.join(", ")
    );
    Ok(())
}
