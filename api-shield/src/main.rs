//! The `api-shield` binary: parses the command line and dispatches to a subcommand.
#![forbid(unsafe_code)]

/// The proxy allocates small buffers per request; mimalloc serves them faster than the
/// system allocator (measured with `cargo xtask bench-proxy`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    api_shield::cli::main()
}
