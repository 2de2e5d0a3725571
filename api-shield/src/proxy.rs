//! The L7 half: request normalisation and routing (listeners, TLS and the upstream client come
//! with the proxy issue).

pub mod normalize;
pub mod routing;
