//! The PROXY protocol (v1 text and v2 binary, the `HAProxy` specification) on listeners behind a load
//! balancer: the header before the TLS handshake names the real client. It is read only from
//! trusted peers; a listener that expects it refuses connections without it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

const V2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];
/// Longest v1 line, CRLF included.
const V1_MAX: usize = 107;

/// A missing or malformed PROXY header.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// Not a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// A PROXY header that does not parse.
    #[error("malformed PROXY protocol header")]
    Malformed,
}

/// Reads the header and returns the client it names (`None` for `LOCAL`/`UNKNOWN`: the
/// connection's own peer stands). Reads exactly the header's bytes, nothing after it.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut first = [0u8; 12];
    stream.read_exact(&mut first[..5]).await?;
    if &first[..5] == b"PROXY" {
        return read_v1(stream).await;
    }
    stream.read_exact(&mut first[5..]).await?;
    if first != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    read_v2(stream).await
}

async fn read_v1<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut line = b"PROXY".to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err(ProxyHeaderError::Malformed);
        }
        line.push(stream.read_u8().await?);
    }
    let text =
        std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| ProxyHeaderError::Malformed)?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            let port: u16 = sport.parse().map_err(|_| ProxyHeaderError::Malformed)?;
            if (*family == "TCP4") != ip.is_ipv4() {
                return Err(ProxyHeaderError::Malformed);
            }
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyHeaderError::Malformed),
    }
}

async fn read_v2<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let version_command = stream.read_u8().await?;
    let family = stream.read_u8().await?;
    let len = usize::from(stream.read_u16().await?);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Malformed);
    }
    match version_command & 0x0f {
        0 => return Ok(None),
        1 => {}
        _ => return Err(ProxyHeaderError::Malformed),
    }
    match family >> 4 {
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Ok(Some(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        2 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                port,
            )))
        }
        0 => Ok(None),
        _ => Err(ProxyHeaderError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let result = read_header(&mut cursor).await;
        let position = usize::try_from(cursor.position()).unwrap();
        (result, bytes[position..].to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_rest() {
        let (r, rest) = parse(b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 443\r\n\x16\x03\x01").await;
        assert_eq!(r.unwrap(), Some("198.51.100.7:5555".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01");
        let (r, _) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::7]:5555".parse().unwrap()));
        let (r, _) = parse(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(r.unwrap(), None);
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 x 443\r\n"[..],
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 443\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
        ] {
            assert!(
                matches!(parse(bad).await.0, Err(ProxyHeaderError::Malformed)),
                "{bad:?}"
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'a'; 200]].concat();
        assert!(matches!(
            parse(&long).await.0,
            Err(ProxyHeaderError::Malformed)
        ));
    }

    #[tokio::test]
    async fn v2_names_the_client_and_anything_else_is_refused() {
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 10, 0, 0, 1, 0x15, 0xb3, 0x01, 0xbb,
        ]);
        v2.extend(b"rest");
        let (r, rest) = parse(&v2).await;
        assert_eq!(r.unwrap(), Some("198.51.100.7:5555".parse().unwrap()));
        assert_eq!(rest, b"rest");
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00")
                .await
                .0,
            Err(ProxyHeaderError::Missing)
        ));
    }
}
