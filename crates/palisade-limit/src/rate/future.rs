//! The waits of a [`RateLimiter`]: each reserves its slot up front and sleeps
//! exactly until it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_clock::Clock;

use super::gcra::Gcra;
use super::{RateLimited, RateLimiter};

#[derive(Debug)]
enum State {
    Start,
    /// Reserved: the TAT written and the nanoseconds taken, to give back if the
    /// wait is dropped before its time.
    Reserved {
        written: u64,
        amount: u64,
    },
    Done,
}

pin_project_lite::pin_project! {
    /// A wait for `n` calls that reserves them on its first poll.
    pub(crate) struct Reserve<'a, C: Clock> {
        limiter: &'a RateLimiter<C>,
        n: u32,
        max_wait: Option<Duration>,
        state: State,
        #[pin]
        sleep: Option<C::Sleep>,
    }

    impl<'a, C: Clock> PinnedDrop for Reserve<'a, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let State::Reserved { written, amount } = *this.state {
                Gcra::refund(&this.limiter.inner.tat, written, amount);
            }
        }
    }
}

impl<'a, C: Clock> Reserve<'a, C> {
    pub(crate) fn new(limiter: &'a RateLimiter<C>, n: u32, max_wait: Option<Duration>) -> Self {
        Reserve {
            limiter,
            n,
            max_wait,
            state: State::Start,
            sleep: None,
        }
    }
}

impl<C: Clock> Future for Reserve<'_, C> {
    type Output = Result<(), RateLimited>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let State::Start = this.state {
            let limiter = *this.limiter;
            let n = *this.n;
            if n == 0 {
                *this.state = State::Done;
                return Poll::Ready(Ok(()));
            }
            let gcra = limiter.gcra();
            if u64::from(n) > gcra.burst() {
                *this.state = State::Done;
                return Poll::Ready(Err(limiter.too_many(n, gcra.burst())));
            }
            let now = limiter.now().as_nanos();
            let max_wait = this.max_wait.map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            });
            match gcra.reserve(&limiter.inner.tat, now, u64::from(n), max_wait) {
                Err(wait) => {
                    *this.state = State::Done;
                    return Poll::Ready(Err(limiter.limited(Duration::from_nanos(wait))));
                }
                Ok((0, _)) => {
                    *this.state = State::Done;
                    return Poll::Ready(Ok(()));
                }
                Ok((wait, written)) => {
                    *this.state = State::Reserved {
                        written,
                        amount: gcra.interval.saturating_mul(u64::from(n)),
                    };
                    let sleep = limiter.inner.clock.sleep(Duration::from_nanos(wait));
                    this.sleep.set(Some(sleep));
                }
            }
        }
        let Some(sleep) = this.sleep.as_mut().as_pin_mut() else {
            panic!("a rate-limit wait polled after it completed");
        };
        if sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }
        *this.state = State::Done;
        this.sleep.set(None);
        Poll::Ready(Ok(()))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RateLimiter::until_ready`]: completes when the call it
    /// reserved on its first poll is due. Dropping it before then gives the
    /// reservation back if it is still the latest (see the
    /// [module docs](crate::rate)).
    #[must_use = "futures do nothing unless polled"]
    pub struct UntilReady<'a, C: Clock> {
        #[pin]
        reserve: Reserve<'a, C>,
    }
}

impl<'a, C: Clock> UntilReady<'a, C> {
    pub(crate) fn new(limiter: &'a RateLimiter<C>) -> Self {
        UntilReady {
            reserve: Reserve::new(limiter, 1, None),
        }
    }
}

impl<C: Clock> Future for UntilReady<'_, C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // One call never exceeds the burst (at least 1) and the wait is unbounded:
        // the reservation cannot be refused.
        self.project().reserve.poll(cx).map(|_| ())
    }
}

impl<C: Clock> std::fmt::Debug for UntilReady<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilReady")
            .field("state", &self.reserve.state)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RateLimiter::until_n_ready`]: as [`UntilReady`], for
    /// several calls at once; an error at once when they
    /// [exceed the capacity](RateLimited::exceeds_capacity).
    #[must_use = "futures do nothing unless polled"]
    pub struct UntilNReady<'a, C: Clock> {
        #[pin]
        reserve: Reserve<'a, C>,
    }
}

impl<'a, C: Clock> UntilNReady<'a, C> {
    pub(crate) fn new(limiter: &'a RateLimiter<C>, n: u32) -> Self {
        UntilNReady {
            reserve: Reserve::new(limiter, n, None),
        }
    }
}

impl<C: Clock> Future for UntilNReady<'_, C> {
    type Output = Result<(), RateLimited>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().reserve.poll(cx)
    }
}

impl<C: Clock> std::fmt::Debug for UntilNReady<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilNReady")
            .field("n", &self.reserve.n)
            .field("state", &self.reserve.state)
            .finish_non_exhaustive()
    }
}
