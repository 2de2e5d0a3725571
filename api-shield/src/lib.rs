//! api-shield: a firewall daemon for hosts that serve HTTP APIs.
//!
//! The XDP half (`api-shield-ebpf`) drops floods per source at the NIC; this crate loads and
//! steers it (`fastpath`), reads its configuration (`config`), offers the CLI (`cli`), runs the
//! TLS reverse proxy (`proxy`) with its per-route policies (`policy`), bans abusers at the NIC
//! (`escalate`), answers the control socket (`control`), exports metrics and logs
//! (`telemetry`), and runs it all as one service (`daemon`, `systemd`, `rlimit`, `accept`).

//!
//! What other crates use (the binary, the integration tests, benchmarks and fuzz targets) is
//! `pub`: `cli::main`, `config`, `fastpath`, `pattern`, and the parts of `policy` and `proxy`
//! the benchmarks and fuzz targets exercise. Everything else is `pub(crate)`, and
//! `unreachable_pub` keeps it so, which lets the dead-code lint see unused items.
#![forbid(unsafe_code)]
#![warn(unreachable_pub)]

mod accept;
pub mod blocklists;
pub mod cli;
pub mod config;
mod control;
mod crowdsec;
mod daemon;
mod decisions;
mod escalate;
mod failpoint;
pub mod fastpath;
mod fleet;
mod http_client;
pub mod pattern;
pub mod policy;
pub mod proxy;
mod refusal;
mod rlimit;
mod systemd;
pub mod telemetry;
