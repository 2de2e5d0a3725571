//! Who the client is and what the upstream is told about it: the client address (from
//! `X-Forwarded-For` only when the peer is a trusted proxy), the `X-Forwarded-*` headers, and
//! request ids (a sane one from the client is kept, else a fresh unique one).

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The request id header, on every answer.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

// The names the upstream is told about, parsed once rather than on each request.
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Who the client is, as far as the shield can trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// The `X-Forwarded-For` to send upstream.
    pub forwarded_for: HeaderValue,
}

impl Client {
    /// The peer itself as the client (the peer is no trusted proxy): computed once per
    /// connection, since formatting the address showed per request in the proxy benchmark.
    pub(crate) fn direct(peer: IpAddr) -> Client {
        let ip = peer.to_canonical();
        Client {
            ip,
            forwarded_for: address_list(&[ip]),
        }
    }
}

/// Addresses as an `X-Forwarded-For` value, leftmost first.
fn address_list(addresses: &[IpAddr]) -> HeaderValue {
    let text = addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    HeaderValue::from_str(&text).expect("addresses are visible ASCII")
}

/// The client behind a request. The socket peer is the client, and a client-sent
/// `X-Forwarded-For` is replaced, unless the peer is a trusted proxy. Then the chain it sent
/// (every `X-Forwarded-For` line, in order) is walked from the right past trusted proxies: the
/// first other valid address is the client, and what lies left of it is dropped. A hop that is
/// not an address stops the walk at the last trusted hop. `peer` is the socket peer as the
/// client ([`Client::direct`], made once per connection), the answer for an untrusted peer.
pub(crate) fn client_address<'a>(
    peer: &Client,
    forwarded_for: impl Iterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
) -> Client {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer.ip) {
        return peer.clone();
    }
    let peer = peer.ip;
    let hops: Vec<&str> = forwarded_for
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .collect();
    let mut kept = vec![peer];
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            break;
        };
        kept.push(ip);
        if !is_trusted(&ip) {
            break;
        }
    }
    let ip = *kept.last().expect("the peer is always kept");
    kept.reverse();
    Client {
        ip,
        forwarded_for: address_list(&kept),
    }
}

/// A request's id, held as the header value it is sent as (to the upstream and on the
/// answer), so it is made once per request: a kept id shares the bytes of the request head, a
/// fresh one is one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text (ids are visible ASCII by construction).
    pub(crate) fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's request id when it is sane (1-128 visible ASCII), else a fresh random one.
pub(crate) fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(id) = headers.get(REQUEST_ID) {
        let bytes = id.as_bytes();
        if !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic) {
            return RequestId(id.clone());
        }
    }
    fresh_request_id()
}

/// A fresh id: 128 random bits as 32 lowercase hex digits, so no client can guess another's.
/// They come from the worker thread's own CSPRNG (rand's `ThreadRng`, a `ChaCha` generator
/// seeded from the operating system and reseeded as it goes), not a system call per request,
/// which showed in the proxy benchmark.
pub(crate) fn fresh_request_id() -> RequestId {
    let raw: [u8; 16] = rand::random();
    // `hex`, not `write!("{:032x}")`: core::fmt pads and copies digit by digit, which showed
    // in the proxy benchmark (a dozen one-byte copies per request).
    let mut text = [0u8; 32];
    hex::encode_to_slice(raw, &mut text).expect("32 hex digits fill 32 bytes");
    RequestId(HeaderValue::from_bytes(&text).expect("hex digits are a header value"))
}

/// What the upstream is told about the exchange: `X-Forwarded-For` (the trusted chain),
/// `X-Forwarded-Proto`, `Host` and `X-Forwarded-Host` (the host routing used) and the request
/// id. Other ways a client could claim an address (`Forwarded`, `X-Real-IP`) are removed.
pub(crate) fn forwarded_headers(
    headers: &mut HeaderMap,
    client: &Client,
    https: bool,
    host: Option<&HeaderValue>,
    request_id: &RequestId,
) {
    headers.remove(FORWARDED);
    headers.remove(X_REAL_IP);
    // An insert replaces every value the client sent under that name.
    headers.insert(X_FORWARDED_FOR, client.forwarded_for.clone());
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    if let Some(value) = host {
        headers.insert(header::HOST, value.clone());
        headers.insert(X_FORWARDED_HOST, value.clone());
    } else {
        headers.remove(header::HOST);
        headers.remove(X_FORWARDED_HOST);
    }
    headers.insert(REQUEST_ID, request_id.header_value());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_when_sane_and_fresh_ones_unique() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers).as_str(), "abc-123");
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let a = request_id(&headers);
        let b = request_id(&HeaderMap::new());
        let (a, b) = (a.as_str(), b.as_str());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
        assert!(!a.bytes().any(|c| c.is_ascii_uppercase()), "{a}");
        // Random throughout: no shared prefix, no counter. Over 1000 ids every hex digit
        // position takes many values (a counter or a fixed prefix would pin most of them).
        let ids: Vec<String> = (0..1000)
            .map(|_| fresh_request_id().as_str().to_owned())
            .collect();
        for position in 0..32 {
            let digits: std::collections::HashSet<u8> =
                ids.iter().map(|id| id.as_bytes()[position]).collect();
            assert!(
                digits.len() >= 12,
                "position {position} takes {} values",
                digits.len()
            );
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let c = client_address(&Client::direct(peer), ["6.6.6.6"].into_iter(), &trusted);
        assert_eq!(c.ip, peer, "an untrusted peer cannot name the client");
        assert_eq!(c.forwarded_for, "198.51.100.1");
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let c = client_address(
            &Client::direct(proxy),
            ["203.0.113.7, 10.1.1.1"].into_iter(),
            &trusted,
        );
        assert_eq!(c.ip.to_string(), "203.0.113.7", "rightmost untrusted hop");
        assert_eq!(c.forwarded_for, "203.0.113.7, 10.1.1.1, 10.0.0.5");
        // A client prepending lies or junk cannot displace itself or empty the chain.
        let c = client_address(
            &Client::direct(proxy),
            ["1.2.3.4", "x, 203.0.113.7"].into_iter(),
            &trusted,
        );
        assert_eq!(c.ip.to_string(), "203.0.113.7");
        assert_eq!(c.forwarded_for, "203.0.113.7, 10.0.0.5");
        // Several lines are one chain (a balancer adds its own line).
        let c = client_address(
            &Client::direct(proxy),
            ["6.6.6.6", "203.0.113.8"].into_iter(),
            &trusted,
        );
        assert_eq!(c.ip.to_string(), "203.0.113.8");
        // Junk right of every untrusted hop stops the walk at the last trusted one.
        let c = client_address(
            &Client::direct(proxy),
            ["203.0.113.7, junk"].into_iter(),
            &trusted,
        );
        assert_eq!(c.ip, proxy);
        let c = client_address(&Client::direct(proxy), std::iter::empty(), &trusted);
        assert_eq!(c.ip, proxy);
        // IPv4 peers on a dual-stack socket arrive IPv4-mapped.
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(
            client_address(
                &Client::direct(mapped),
                ["203.0.113.9"].into_iter(),
                &trusted
            )
            .ip
            .to_string(),
            "203.0.113.9"
        );
    }
}
