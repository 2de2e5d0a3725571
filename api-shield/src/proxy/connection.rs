//! Client connections: the listeners, TLS, HTTP/1.1 or HTTP/2 on each connection, and what
//! bounds a connection (limits per address and in total, idle and header timeouts, the PROXY
//! protocol, the drain at stop, eviction of a banned client), and the worker threads connections
//! are served on.

pub(crate) mod conn_limit;
pub(crate) mod drain;
pub(crate) mod evict;
pub(crate) mod head_timer;
pub(crate) mod idle;
pub(crate) mod parse_errors;
pub(crate) mod proxy_protocol;
pub(crate) mod redirect;
pub(crate) mod serve_http;
pub(crate) mod server;
pub(crate) mod supervise;
pub(crate) mod tls;
pub(crate) mod workers;
