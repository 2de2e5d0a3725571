//! api-shield: a firewall daemon for hosts that serve HTTP APIs.
//!
//! The XDP half (`api-shield-ebpf`) drops floods per source at the NIC; this crate loads and
//! steers it (`fastpath`), reads its configuration (`config`), and offers the CLI (`cli`).

pub mod cli;
pub mod config;
pub mod fastpath;
pub mod telemetry;
