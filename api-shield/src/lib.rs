//! api-shield: a firewall daemon for hosts that serve HTTP APIs.
//!
//! The XDP half (`api-shield-ebpf`) drops floods per source at the NIC; this crate loads and
//! steers it (`fastpath`), reads its configuration (`config`), offers the CLI (`cli`), and holds
//! the pieces of the L7 proxy built so far (`proxy`).

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod escalate;
pub mod fastpath;
pub mod policy;
pub mod proxy;
pub mod systemd;
pub mod telemetry;
