//! The integration tests, in one binary (one link of the library instead of one per area):
//! a module per area, and `support` for what they share. Every test runs the real binary or
//! the real XDP program; the privileged ones say so when they cannot run, and fail instead with
//! `API_SHIELD_REQUIRE_PRIVILEGED=1`.
// Pedantic lints are for the product code; tests favour plain, direct code.
#![allow(clippy::pedantic)]

mod support;

// The XDP model and the rig that runs the program against it, shared with the fuzz target
// `xdp` (which uses parts these tests do not, and the other way round). At the crate root,
// where both crates put them.
#[allow(dead_code)]
#[path = "support/xdp_diff.rs"]
mod diff;
#[allow(dead_code)]
#[path = "support/xdp_model.rs"]
mod model;

mod blocklists;
mod cli;
mod cli_maps;
mod control_socket;
mod crowdsec;
mod escalation;
mod faults;
mod fleet;
mod fleet_cluster;
mod fleet_limits;
mod fleet_tls;
mod greedy_clients;
mod hostile_http;
mod operations;
mod policies_auth;
mod policies_traffic;
mod proxy;
mod proxy_tls;
mod proxy_upstream;
mod xdp_flows;
mod xdp_limiter;
mod xdp_model;
mod xdp_netns;
mod xdp_program;
mod xdp_reload;
mod xdp_restarts;
mod xdp_syncookies;
