//! The L7 half: request normalisation and routing (listeners, TLS and the upstream client come
//! with the proxy issue).

pub mod client;
pub mod conn_limit;
pub mod cors;
pub mod drain;
pub mod handler;
pub mod headers;
pub mod idle;
pub mod normalize;
pub mod parse_errors;
pub mod problem;
pub mod proxy_protocol;
pub mod route_metrics;
pub mod routing;
pub mod server;
pub mod tls;
pub mod upgrade;
pub mod upstream;
pub mod upstream_pool;
