//! The L7 half, in three groups: `connection` (listeners, TLS and client connections, their
//! limits and timers), `request` (the request pipeline: normalisation, routing, policies,
//! forwarding, the answers the shield makes itself) and `upstream` (named upstreams and their
//! pooled keep-alive connections).

pub(crate) mod connection;
pub mod request;
pub(crate) mod upstream;
