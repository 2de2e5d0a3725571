//! api-shield: a firewall daemon for hosts that serve HTTP APIs.
//!
//! The XDP half (`api-shield-ebpf`) drops floods per source at the NIC; this crate loads and
//! steers it (`fastpath`), reads its configuration (`config`), offers the CLI (`cli`), runs the
//! TLS reverse proxy (`proxy`) with its per-route policies (`policy`), bans abusers at the NIC
//! (`escalate`), answers the control socket (`control`), exports metrics and logs
//! (`telemetry`), and runs it all as one service (`daemon`, `systemd`, `rlimit`, `accept`).

pub mod accept;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod escalate;
mod failpoint;
pub mod fastpath;
pub mod pattern;
pub mod policy;
pub mod proxy;
pub mod refusal;
pub mod rlimit;
pub mod systemd;
pub mod telemetry;
