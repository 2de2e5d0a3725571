//! One request through the shield: its path normalised and routed, CORS, the route's policies
//! and body, forwarding with the client's X-Forwarded-* headers, the answers the shield makes
//! itself, the exchange's deadlines and its metrics.

pub(crate) mod client;
pub(crate) mod client_body;
pub(crate) mod cors;
pub(crate) mod deadline;
pub(crate) mod handler;
pub(crate) mod headers;
pub mod normalize;
pub(crate) mod problem;
pub(crate) mod route_metrics;
pub mod routing;
pub(crate) mod upgrade;
