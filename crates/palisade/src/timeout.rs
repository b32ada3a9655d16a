//! A timeout that costs no timer when the future is already ready.
//!
//! [`timeout`] polls the wrapped future once before it arms a timer: a future that
//! completes on its first poll (a cache hit, a value already buffered) never touches
//! the timer wheel, which is most of what `tokio::time::timeout` costs. Only when the
//! future returns `Pending` is the clock read and the sleep created; the time limit
//! counts from then.
//!
#![cfg_attr(feature = "clock", doc = "```")]
#![cfg_attr(not(feature = "clock"), doc = "```ignore")]
//! use palisade::timeout::timeout;
//! use palisade::clock::TokioClock;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let ready = timeout(TokioClock, Some(Duration::from_millis(10)), async { 7 }).await;
//! assert_eq!(ready.unwrap(), 7);
//!
//! let slow = timeout(TokioClock, Some(Duration::from_millis(10)), std::future::pending::<()>());
//! assert_eq!(slow.await.unwrap_err().after(), Duration::from_millis(10));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_clock::Clock;

/// The time limit of a [`timeout`] ran out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Elapsed {
    after: Duration,
}

impl Elapsed {
    /// The time limit that ran out.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?}", self.after)
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// A future with a time limit; made by [`timeout`].
    ///
    /// Dropping it drops the wrapped future and releases the timer, if one was
    /// armed.
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<C: Clock, F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<C::Sleep>,
        clock: C,
        limit: Option<Duration>,
    }
}

/// Runs `future` with a time limit of `limit` on `clock` (`None`: no limit, no
/// timer ever). The future is polled once before any timer is armed.
pub fn timeout<C: Clock, F: Future>(clock: C, limit: Option<Duration>, future: F) -> Timeout<C, F> {
    Timeout {
        inner: future,
        sleep: None,
        clock,
        limit,
    }
}

impl<C: Clock, F: Future> Future for Timeout<C, F> {
    type Output = Result<F::Output, Elapsed>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(v) = this.inner.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        if this.sleep.is_none() {
            this.sleep.set(Some(this.clock.sleep(limit)));
        }
        match this.sleep.as_pin_mut() {
            Some(sleep) => match sleep.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Elapsed { after: limit })),
                Poll::Pending => Poll::Pending,
            },
            None => Poll::Pending,
        }
    }
}

impl<C: Clock, F> fmt::Debug for Timeout<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("limit", &self.limit)
            .field("armed", &self.sleep.is_some())
            .finish()
    }
}
