//! The deadline of a request body: [`DeadlineBody`] fails with [`BodyTimeout`] when the body is
//! not complete in time (set by [`crate::limits::guard`]); [`body_timeout`] tells the handlers that
//! read a body that this is why it failed, so that they answer 408.

use axum::body::{Body, Bytes};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The error a request body gives when it did not arrive in time.
#[derive(Debug)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} ms of its reading starting",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyTimeout {}

/// The [`BodyTimeout`] behind an error reading a request body, if that is what it was.
pub fn body_timeout<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        source = s.source();
    }
    None
}

/// A request body that fails with [`BodyTimeout`] when it is not complete by its deadline.
pub struct DeadlineBody {
    inner: Body,
    /// Set once the body has been read to its end.
    finished: Arc<AtomicBool>,
    /// Set on the first read: a request waiting for its turn ([`crate::limits::fair_share`]) is not on the clock.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
}

impl DeadlineBody {
    pub fn new(inner: Body, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            finished: Arc::new(AtomicBool::new(false)),
            deadline: None,
            timeout,
        }
    }

    /// A flag that turns true once the body has been read to its end.
    pub fn finished(&self) -> Arc<AtomicBool> {
        self.finished.clone()
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if frame.is_none() || this.inner.is_end_stream() {
                    this.finished.store(true, Ordering::Relaxed);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_body_fails_with_body_timeout() {
        let (mut tx, body) = futures_channel_body();
        tx.push(Bytes::from_static(b"{\"a\""));
        let deadline = DeadlineBody::new(body, Duration::from_millis(50));
        let err = axum::body::to_bytes(Body::new(deadline), 1024).await.unwrap_err();
        let t = body_timeout(&err).expect("a BodyTimeout in the chain");
        assert_eq!(t.0, Duration::from_millis(50));
    }

    /// A body that yields the chunks pushed and then never ends.
    fn futures_channel_body() -> (Chunks, Body) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let stream = futures::stream::unfold((rx, tx.clone()), |(mut rx, keep)| async move {
            let b = rx.recv().await?;
            Some((Ok::<_, std::io::Error>(b), (rx, keep)))
        });
        (Chunks(tx), Body::from_stream(stream))
    }

    struct Chunks(tokio::sync::mpsc::UnboundedSender<Bytes>);
    impl Chunks {
        fn push(&mut self, b: Bytes) {
            self.0.send(b).unwrap();
        }
    }
}
