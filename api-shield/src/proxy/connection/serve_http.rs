//! hyper's server side of one client connection, with the proxy's limits and timers: HTTP/2
//! when the TLS handshake agreed on `h2` (ALPN), HTTP/1.1 otherwise.
//!
//! Chosen from ALPN rather than by hyper-util's auto builder, which reads the first bytes to
//! tell HTTP/2's preface from an HTTP/1.1 request and then passes every read and write of the
//! connection through a rewinding wrapper and its own state machine. Over TLS, ALPN settles the
//! protocol (RFC 9113, section 3.2); the plain-HTTP listener, which only redirects, speaks
//! HTTP/1.1.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use hyper::{
    body::{Body, Incoming},
    rt::{bounds::Http2ServerConnExec, Read, Write},
    server::conn::{http1, http2},
    service::HttpService,
};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::ProxyConfig;
use crate::proxy::connection::head_timer::HeadTimer;

/// The protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 (and upgrades from it).
    Http1,
    /// HTTP/2.
    Http2,
}

impl Protocol {
    /// The protocol ALPN agreed on: HTTP/2 for `h2`, else HTTP/1.1 (also without ALPN).
    #[must_use]
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
        if alpn == Some(b"h2".as_slice()) {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

/// A connection being served.
pub(crate) enum Served<I, S>
where
    S: HttpService<Incoming>,
{
    /// Over HTTP/1.1.
    Http1(Pin<Box<http1::UpgradeableConnection<I, S>>>),
    /// Over HTTP/2.
    Http2(Pin<Box<http2::Connection<I, S, TokioExecutor>>>),
}

/// hyper's HTTP/1.1 settings for one connection; `head` keeps its header-read timeout.
#[must_use]
pub(crate) fn http1_builder(settings: &ProxyConfig, head: HeadTimer) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(head)
        .header_read_timeout(settings.header_timeout)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes);
    builder
}

impl<I, S, B> Served<I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    /// Serves `io` with `service` in `protocol`. `head` keeps HTTP/1.1's header-read timeout.
    pub(crate) fn new(
        protocol: Protocol,
        io: I,
        service: S,
        settings: &ProxyConfig,
        head: HeadTimer,
    ) -> Served<I, S> {
        match protocol {
            Protocol::Http1 => Served::Http1(Box::pin(
                http1_builder(settings, head)
                    .serve_connection(io, service)
                    .with_upgrades(),
            )),
            Protocol::Http2 => Served::Http2(Box::pin(
                http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(settings.max_concurrent_streams)
                    .max_header_list_size(
                        u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX),
                    )
                    .serve_connection(io, service),
            )),
        }
    }

    /// Finishes the exchange in progress, then closes (GOAWAY on HTTP/2).
    pub(crate) fn graceful_shutdown(&mut self) {
        match self {
            Served::Http1(connection) => connection.as_mut().graceful_shutdown(),
            Served::Http2(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

impl<I, S, B> Future for Served<I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: Http2ServerConnExec<S::Future, B>,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Served::Http1(connection) => connection.as_mut().poll(cx),
            Served::Http2(connection) => connection.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_h2_is_http2_and_anything_else_http1() {
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(Some(b"h2c")), Protocol::Http1);
    }
}
