//! Protocol upgrades over HTTP/1.1 (`Connection: upgrade` + `Upgrade: websocket`, or any other
//! protocol): the upgrade headers survive hop-by-hop stripping, and once the upstream answers
//! `101 Switching Protocols` the two connections are spliced together byte for byte.

use http::{header, HeaderMap, HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The protocol a request asks to upgrade to, if it does.
pub fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        request.headers().get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Puts the upgrade headers back after hop-by-hop stripping.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Splices the client's and the upstream's upgraded connections until either side closes.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
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
