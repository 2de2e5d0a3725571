//! The local control socket: a Unix socket (mode 0600, root only) over which the CLI asks the
//! running daemon for its status, a reload, or the live view of `top`. One JSON request per
//! line, one JSON answer per line.

pub mod client;
pub mod protocol;
pub mod server;

pub use protocol::{Request, Response};
