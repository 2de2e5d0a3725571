//! WebSocket over HTTP/1.1 (`GET` with `Connection: upgrade` and `Upgrade: websocket`): the
//! upgrade headers survive hop-by-hop stripping, and once the upstream answers `101 Switching
//! Protocols` the two connections are spliced together byte for byte. No other protocol is
//! upgraded: an `h2c` upgrade, say, would let a client speak HTTP/2 to the upstream past every
//! route and policy.

use http::{header, HeaderMap, HeaderValue, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The protocol a request asks to upgrade to, if it is a WebSocket handshake.
pub(crate) fn requested(head: &http::request::Parts) -> Option<HeaderValue> {
    if head.version != Version::HTTP_11 || head.method != http::Method::GET {
        return None;
    }
    let asks = head
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = head.headers.get(header::UPGRADE)?;
    (asks && protocol.as_bytes().eq_ignore_ascii_case(b"websocket")).then(|| protocol.clone())
}

/// Puts the upgrade headers back after hop-by-hop stripping.
pub(crate) fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Splices the client's and the upstream's upgraded connections until either side closes,
/// holding `permit` (the client's place under the connection limit) and the connection's count
/// on its worker meanwhile.
pub(crate) fn splice<P: Send + 'static>(client: OnUpgrade, upstream: OnUpgrade, permit: P) {
    let open = crate::proxy::connection::workers::hold_open();
    tokio::spawn(async move {
        let _held = (permit, open);
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    });
}
