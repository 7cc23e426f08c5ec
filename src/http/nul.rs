//! PostgreSQL cannot store a NUL character in text, and would answer an insert or even a
//! lookup holding one with an error: JSON bodies are screened for the `\u0000` escape as they
//! stream in (no buffering), so any such field is a 400 before a handler sees it.
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures_util::Stream;

/// Where the scanner is in a JSON text: only `\u` escapes matter (a backslash occurs nowhere
/// else in valid JSON), and only `\u0000` among them.
#[derive(Clone, Copy)]
enum Scan {
    Text,
    Backslash,
    /// Inside `\u`: hex digits seen, all of them `0` so far.
    Unicode(u8, bool),
}

impl Scan {
    /// Advances over `bytes`; false once a `\u0000` is complete.
    fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            *self = match *self {
                Scan::Text if b == b'\\' => Scan::Backslash,
                Scan::Text => Scan::Text,
                Scan::Backslash if b == b'u' => Scan::Unicode(0, true),
                Scan::Backslash => Scan::Text,
                Scan::Unicode(3, zero) if zero && b == b'0' => return false,
                Scan::Unicode(3, _) => Scan::Text,
                Scan::Unicode(n, zero) => Scan::Unicode(n + 1, zero && b == b'0'),
            };
        }
        true
    }
}

struct Screened<S> {
    inner: S,
    scan: Scan,
}

impl<S: Stream<Item = Result<Bytes, PayloadError>> + Unpin> Stream for Screened<S> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            if !self.scan.feed(chunk) {
                return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    NUL_MESSAGE,
                )))));
            }
        }
        polled
    }
}

pub(crate) const NUL_MESSAGE: &str = "text must not contain NUL characters (\\u0000)";

/// Screens JSON request bodies for NUL characters.
pub async fn screen_json(
    mut req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if json {
        let inner = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(Screened {
                inner,
                scan: Scan::Text,
            }),
        });
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(chunks: &[&str]) -> bool {
        let mut scan = Scan::Text;
        chunks.iter().all(|c| scan.feed(c.as_bytes()))
    }

    #[test]
    fn only_an_escaped_nul_is_refused_wherever_the_chunks_split_it() {
        assert!(!passes(&[r#"{"a":"x\u0000"}"#]));
        assert!(!passes(&[r#"{"a":"x\u00"#, r#"00"}"#]));
        assert!(!passes(&[r#"{"a":"x\"#, r#"u0000"}"#]));
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert!(passes(&[r#"{"a":"x\\u0000"}"#]));
        assert!(passes(&[r#"{"a":"x\u0001 \u1000 \n \\"}"#]));
        assert!(!passes(&[r#"{"a":"\\\u0000"}"#]));
    }
}
