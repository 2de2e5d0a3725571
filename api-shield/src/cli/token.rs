//! `api-shield token new`: mints a bearer token with an issuer's HMAC secret or signing key,
//! for operators testing their routes.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::{
    config,
    policy::auth::jwt_keys::{family, parse_algorithm, read_secret},
};

/// Arguments.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Mint a token.
    ///
    /// Example: api-shield token new --issuer demo --sub alice --scopes orders:read --ttl 1h
    New(NewArgs),
}

/// `token new` arguments.
#[derive(Debug, clap::Args)]
pub(super) struct NewArgs {
    /// The config file naming the issuer.
    #[arg(long, short, default_value = super::maps_args::DEFAULT_CONFIG)]
    config: PathBuf,
    /// The issuer's name in the config.
    #[arg(long)]
    issuer: String,
    /// The subject (`sub`).
    #[arg(long)]
    sub: String,
    /// Scopes, comma-separated (written to the issuer's scope claim).
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// A `kid` for the header.
    #[arg(long)]
    kid: Option<String>,
}

/// Prints the token.
pub(super) fn run(args: &Args) -> Result<()> {
    let Command::New(args) = &args.command;
    let config = config::load(&args.config)?;
    let Some(issuer) = config.issuers.iter().find(|i| i.name == args.issuer) else {
        bail!(
            "{}: no issuer is named `{}`",
            args.config.display(),
            args.issuer
        );
    };
    let algorithms: Vec<Algorithm> = issuer
        .algorithms
        .iter()
        .filter_map(|a| parse_algorithm(a))
        .collect();
    let pick = |fam: &str| algorithms.iter().copied().find(|a| family(*a) == fam);
    let (alg, key) = if let Some(path) = &issuer.signing_key {
        let pem = std::fs::read(config.source.resolve(path))
            .with_context(|| format!("reading {}", path.display()))?;
        if let (Some(alg), Ok(key)) = (pick("RSA"), EncodingKey::from_rsa_pem(&pem)) {
            (alg, key)
        } else if let (Some(alg), Ok(key)) = (pick("EC"), EncodingKey::from_ec_pem(&pem)) {
            (alg, key)
        } else if let (Some(alg), Ok(key)) = (pick("OKP"), EncodingKey::from_ed_pem(&pem)) {
            (alg, key)
        } else {
            bail!(
                "{}: no private key in it fits the issuer's algorithms",
                path.display()
            );
        }
    } else {
        let secret_file = issuer
            .secret_file
            .as_ref()
            .map(|p| config.source.resolve(p));
        let secret = read_secret(secret_file.as_deref(), issuer.secret_env.as_deref())?
            .context("the issuer has neither signing_key nor an HMAC secret")?;
        let alg = pick("HMAC").context("the issuer accepts no HMAC algorithm")?;
        (alg, EncodingKey::from_secret(&secret))
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let scopes: Value = if issuer.scope_claim == "scope" {
        json!(args.scopes.join(" "))
    } else {
        json!(args.scopes)
    };
    let mut claims = json!({
        "iss": issuer.issuer,
        "aud": issuer.audiences[0],
        "sub": args.sub,
        "iat": now,
        "nbf": now,
        "exp": now + args.ttl.as_secs(),
    });
    claims[&issuer.scope_claim] = scopes;
    let mut header = Header::new(alg);
    header.kid.clone_from(&args.kid);
    println!("{}", jsonwebtoken::encode(&header, &claims, &key)?);
    Ok(())
}
