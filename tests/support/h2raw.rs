//! Raw HTTP/2 for hostile tests: frames and HPACK blocks built by hand, so a test can send
//! what no well-behaved client library would.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The client connection preface followed by an empty SETTINGS frame.
pub fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&h2_frame(0x4, 0, 0, &[]));
    out
}

/// An HTTP/2 frame.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's high bits set to `flags`.
pub fn hpack_int(flags: u8, prefix: u32, value: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// An HPACK string literal (no Huffman coding).
pub fn hpack_string(text: &[u8], out: &mut Vec<u8>) {
    hpack_int(0, 7, text.len(), out);
    out.extend_from_slice(text);
}

/// A header field as a literal with a new name; `indexed` also adds it to the dynamic table.
pub fn hpack_literal(name: &str, value: &[u8], indexed: bool, out: &mut Vec<u8>) {
    out.push(if indexed { 0x40 } else { 0x00 });
    hpack_string(name.as_bytes(), out);
    hpack_string(value, out);
}

/// A header block of literals, no indexing.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        hpack_literal(name, value.as_bytes(), false, &mut block);
    }
    block
}

/// An HTTP/2 HEADERS frame for stream 1 with these fields (HPACK literals, no indexing).
pub fn h2_headers(fields: &[(&str, &str)]) -> Vec<u8> {
    h2_frame(0x1, 0x4 | 0x1, 1, &header_block(fields)) // END_HEADERS | END_STREAM
}

/// The request pseudo-headers of a GET of `path`.
pub fn get_fields(path: &str) -> [(&str, &str); 4] {
    [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", path),
    ]
}

/// One frame read whole: (type, flags, stream, payload), or `None` once the connection ends.
pub async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}
