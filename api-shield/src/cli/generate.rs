//! `api-shield generate man|completions SHELL`: the man page and shell completions, generated
//! from the command line's own definition (used by `cargo xtask install`).

use anyhow::Result;
use clap::CommandFactory;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The man page (section 8), roff on stdout.
    Man,
    /// Completions for a shell on stdout.
    Completions {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
}

/// Writes what was asked to stdout.
pub fn run(args: &Args) -> Result<()> {
    let mut command = super::Cli::command();
    let mut out = std::io::stdout();
    match &args.what {
        What::Man => clap_mangen::Man::new(command)
            .section("8")
            .render(&mut out)?,
        What::Completions { shell } => {
            clap_complete::generate(*shell, &mut command, "api-shield", &mut out);
        }
    }
    Ok(())
}
