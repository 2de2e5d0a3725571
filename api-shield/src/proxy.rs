//! The L7 half: TLS listeners and client connections, request normalisation and routing, the
//! per-route response policies, and forwarding to pooled upstream connections.

pub mod client;
pub mod client_body;
pub mod conn_limit;
pub mod cors;
pub mod deadline;
pub mod drain;
pub mod evict;
pub mod handler;
pub mod head_timer;
pub mod headers;
pub mod idle;
pub mod normalize;
pub mod parse_errors;
pub mod problem;
pub mod proxy_protocol;
pub mod route_metrics;
pub mod routing;
pub mod serve_http;
pub mod server;
pub mod supervise;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod upstream_pool;
