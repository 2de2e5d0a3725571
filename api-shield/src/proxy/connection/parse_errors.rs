//! The answer to an HTTP/1.1 request hyper cannot parse. hyper answers those itself, before any
//! service sees a request, with an empty `400`, `414` or `431` (`connection: close`,
//! `content-length: 0`) and no hook to change it. This stream wrapper recognises that exact
//! answer on its way out (every answer the shield gives otherwise carries `x-request-id`) and
//! writes the shield's own in its place: `application/problem+json` with a request id and the
//! response headers of every other answer, counted and logged like any refusal.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use http::HeaderValue;

use crate::proxy::{request::headers::ResponseHeaders, request::problem};
use crate::refusal::{Denial, Refusal};

/// Builds the complete replacement answer (head and body) for a denial.
pub(crate) type Answer = Arc<dyn Fn(Denial) -> Vec<u8> + Send + Sync>;

/// A client stream whose automatic parse-error answers are replaced.
pub(crate) struct ParseErrors<S> {
    inner: S,
    answer: Answer,
    /// The replacement being written, how much of it is written, and the length of hyper's
    /// answer to report once it is all out.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ParseErrors<S> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: S, answer: Answer) -> ParseErrors<S> {
        ParseErrors {
            inner,
            answer,
            pending: None,
        }
    }
}

/// The shield's answer for `denial`: head and problem+json body, closing the connection.
pub(crate) fn render(
    denial: Denial,
    request_id: &str,
    headers: &ResponseHeaders,
    https: bool,
) -> Vec<u8> {
    let problem::Rendered {
        status,
        headers: mut fields,
        body,
    } = problem::rendered(&Refusal::new(denial), Some(request_id));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        fields.insert(crate::proxy::request::client::REQUEST_ID, id);
    }
    headers.apply(&mut fields, https);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    for (name, value) in &fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// The denial behind hyper's own answer in `buf`, if `buf` is exactly that answer.
fn automatic_answer(buf: &[u8]) -> Option<Denial> {
    // Cheap refusals first: this runs on every write of every HTTP/1.1 connection.
    if buf.len() > 256 || !buf.starts_with(b"HTTP/1.1 4") || !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    if !text.contains("\r\nconnection: close\r\n")
        || !text.contains("\r\ncontent-length: 0\r\n")
        || text.contains("\r\nx-request-id:")
    {
        return None;
    }
    match rest.get(..4)? {
        "400 " => Some(Denial::BadRequest),
        "414 " => Some(Denial::UriTooLong),
        "431 " => Some(Denial::HeadersTooLarge),
        _ => None,
    }
}

impl<S: AsyncWrite + Unpin> ParseErrors<S> {
    /// Writes the pending replacement; `Ready(Ok(n))` with hyper's length once it is all out.
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, reported)) = &mut self.pending {
            if *written == bytes.len() {
                let reported = *reported;
                self.pending = None;
                return Poll::Ready(Ok(reported));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                other => return other,
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ParseErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ParseErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match automatic_answer(buf) {
                Some(denial) => {
                    let replacement = (self.answer)(denial);
                    self.pending = Some((replacement, 0, buf.len()));
                }
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.flush_pending(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's own answer is a head alone: one non-empty slice.
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            if self.pending.is_some() || automatic_answer(only).is_some() {
                return self.poll_write(cx, only);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_some() {
            match self.flush_pending(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 03:15:32 GMT\r\n\r\n";

    #[test]
    fn only_hypers_own_answers_are_recognised() {
        assert_eq!(automatic_answer(HYPER_400), Some(Denial::BadRequest));
        let too_large = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(automatic_answer(too_large), Some(Denial::HeadersTooLarge));
        // The shield's own answers carry a request id; upstream answers pass through it too.
        let own = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\nx-request-id: 1\r\n\r\n";
        assert_eq!(automatic_answer(own), None);
        let with_body =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        assert_eq!(automatic_answer(with_body), None);
        assert_eq!(
            automatic_answer(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(automatic_answer(&HYPER_400[..40]), None);
    }

    #[tokio::test]
    async fn the_replacement_goes_out_whole_and_other_bytes_untouched() {
        let (near, mut far) = tokio::io::duplex(16);
        let answer: Answer = Arc::new(|denial| format!("problem:{}", denial.slug()).into_bytes());
        let mut stream = ParseErrors::new(near, answer);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.unwrap();
            all
        });
        stream
            .write_all(b"HTTP/1.1 200 OK\r\n\r\nhi")
            .await
            .unwrap();
        stream.write_all(HYPER_400).await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(
            reader.await.unwrap(),
            b"HTTP/1.1 200 OK\r\n\r\nhiproblem:bad-request"
        );
    }
}
