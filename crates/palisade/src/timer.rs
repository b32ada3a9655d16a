//! The pipeline's attempt timer: a timeout that costs no timer when the future is
//! already ready.
//!
//! [`timeout`] polls the wrapped future once before it arms a timer: a future that
//! completes on its first poll (a cache hit, a value already buffered) never touches
//! the timer wheel, which is most of what `tokio::time::timeout` costs. Only when the
//! future returns `Pending` is the clock read and the sleep created; the time limit
//! counts from then. It runs on the pipeline's [`Clock`], so virtual time drives it.
//!
//! The public timeout function is [`palisade_context::timeout`], which also honours
//! the call's Context; this module is public only as the deprecated
//! `palisade::timeout`.

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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn polls_once_before_arming_a_timer() {
        use palisade_clock::ManualClock;
        use std::pin::pin;
        use std::task::{Context as TaskCx, Waker};

        let clock = ManualClock::new();
        let mut cx = TaskCx::from_waker(Waker::noop());
        let mut ready = pin!(timeout(clock.clone(), Some(MS), async { 3 }));
        assert_eq!(ready.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
        assert_eq!(clock.pending_sleeps(), 0, "a ready future pays no timer");

        let mut pending = pin!(timeout(
            clock.clone(),
            Some(MS),
            std::future::pending::<()>()
        ));
        assert!(pending.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.pending_sleeps(), 1);
        clock.advance(MS);
        assert!(matches!(pending.as_mut().poll(&mut cx), Poll::Ready(Err(e)) if e.after() == MS));
    }
}
