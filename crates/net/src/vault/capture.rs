//! Copies of request and response bodies for a tape that records egress content: a body
//! wrapper that forwards every frame untouched and keeps the first [`CAPTURE_BYTES`] of the data
//! (the whole body is counted), and a hook run once the response body has ended or was
//! dropped, which is when the request's log entry can carry both bodies.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Bytes of each body kept.
pub const CAPTURE_BYTES: usize = 64 * 1024;

/// The kept start of a body and its full size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
}

pub type Shared = Arc<Mutex<Captured>>;

type OnEnd = Box<dyn FnOnce() + Send + Sync>;

/// A body that copies what passes through into `into`.
pub struct Tee<B> {
    inner: B,
    into: Shared,
    on_end: Option<OnEnd>,
}

impl<B> Tee<B> {
    pub fn new(inner: B, into: Shared) -> Self {
        Tee {
            inner,
            into,
            on_end: None,
        }
    }

    /// Run `f` once, when the body has ended (or is dropped before).
    pub fn on_end(mut self, f: impl FnOnce() + Send + Sync + 'static) -> Self {
        self.on_end = Some(Box::new(f));
        self
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl<B> Drop for Tee<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let mut c = self.into.lock().unwrap_or_else(|e| e.into_inner());
                    c.total += data.len() as u64;
                    let room = CAPTURE_BYTES.saturating_sub(c.bytes.len());
                    c.bytes.extend_from_slice(&data[..room.min(data.len())]);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `data` with every occurrence of each secret replaced by `[REDACTED]` (an upstream that
/// echoes the injected header must not put the value on a tape).
pub fn redact(data: &[u8], secrets: &[&str]) -> Vec<u8> {
    let mut out = data.to_vec();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let needle = s.as_bytes();
        let mut result = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(needle) {
                result.extend_from_slice(b"[REDACTED]");
                i += needle.len();
            } else {
                result.push(out[i]);
                i += 1;
            }
        }
        out = result;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_tee_keeps_the_start_counts_everything_and_calls_back_once() {
        let data = Bytes::from(vec![b'x'; CAPTURE_BYTES + 10]);
        let into = Shared::default();
        let ended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let e = ended.clone();
        let tee = Tee::new(Full::new(data.clone()), into.clone()).on_end(move || {
            e.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let body = tee.collect().await.unwrap().to_bytes();
        assert_eq!(body, data, "the body passes through untouched");
        let c = into.lock().unwrap().clone();
        assert_eq!((c.bytes.len(), c.total), (CAPTURE_BYTES, data.len() as u64));
        assert!(c.truncated());
        assert_eq!(ended.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact(b"auth: Bearer sk-1 and sk-1!", &["sk-1", ""]),
            b"auth: Bearer [REDACTED] and [REDACTED]!".to_vec()
        );
    }
}
