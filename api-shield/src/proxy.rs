//! The L7 half: TLS listeners and client connections, request normalisation and routing, the
//! per-route response policies, and forwarding to pooled upstream connections.

pub(crate) mod client;
pub(crate) mod client_body;
pub(crate) mod conn_limit;
pub(crate) mod cors;
pub(crate) mod deadline;
pub(crate) mod drain;
pub(crate) mod evict;
pub(crate) mod handler;
pub(crate) mod head_timer;
pub(crate) mod headers;
pub(crate) mod idle;
pub mod normalize;
pub(crate) mod parse_errors;
pub(crate) mod problem;
pub(crate) mod proxy_protocol;
pub(crate) mod route_metrics;
pub mod routing;
pub(crate) mod serve_http;
pub(crate) mod server;
pub(crate) mod supervise;
pub(crate) mod tls;
pub(crate) mod upgrade;
pub(crate) mod upstream;
pub(crate) mod upstream_pool;
