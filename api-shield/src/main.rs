//! The `api-shield` binary: parses the command line and dispatches to a subcommand.

fn main() -> std::process::ExitCode {
    api_shield::cli::main()
}
