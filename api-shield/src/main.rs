//! The `api-shield` binary: parses the command line and dispatches to a subcommand.
// The one unsafe call is `restore_default_sigpipe`'s; the library forbids unsafe code.
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

/// The proxy allocates small buffers per request; mimalloc serves them faster than the
/// system allocator (measured with `cargo xtask bench-proxy`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = api_shield::cli::Cli::parse();
    if !cli.serves() {
        restore_default_sigpipe();
    }
    api_shield::cli::execute(cli)
}

/// A command whose output goes into a pipe (`api-shield bans | head`) ends quietly when the
/// reader closes it, as other Unix tools do: SIGPIPE's default action. Rust's runtime sets it to
/// "ignore", so the next write fails and `println!` panics instead. The daemon and the demo API
/// keep it ignored: a peer closing its socket is an error they handle, never their end.
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: signal(2) installing SIG_DFL runs no handler code; this runs on the only thread,
    // before any other starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
