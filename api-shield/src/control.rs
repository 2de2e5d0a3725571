//! The local control socket: a Unix socket (mode 0600, root only) over which the CLI asks the
//! running daemon for its status, a reload, bans, or the live view of `top`. One JSON request
//! per line, one JSON reply per line, both typed and versioned (`protocol`); the daemon answers
//! through the [`server::ControlHandler`] trait.

pub(crate) mod client;
pub(crate) mod protocol;
pub(crate) mod server;

pub(crate) use protocol::{Answer, Request};
