//! [`RateLimit`]: the one interface of a rate limit that a pipeline asks, whether
//! it is kept in this process ([`RateLimiter`]) or elsewhere (a fleet-wide limit
//! kept on a server, such as `palisade-limit-redis`'s).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use palisade_clock::Clock;
use palisade_context::Context;

use super::{RateLimited, RateLimiter};

/// A rate limit asked once per call: take `cost` units of it now, or say when
/// they would be there.
///
/// The local [`RateLimiter`] answers at once (its future is ready when made and
/// allocates nothing); a limit kept on a server answers after a round trip, bounded
/// by the caller's `ctx` deadline. Either way a refusal is the same
/// [`RateLimited`], so [`Rejection`](palisade_classify::Rejection) and its
/// retry-after read the same.
///
/// Users may implement it. A method added to it later comes with a default body.
pub trait RateLimit: Send + Sync + fmt::Debug + 'static {
    /// Takes `cost` units for one call made under `ctx` (a weighted decision; a
    /// cost of 0 always passes). The answer must not wait longer than `ctx`'s
    /// deadline.
    fn acquire<'a>(&'a self, ctx: &'a Context, cost: u32) -> Acquire<'a>;
}

/// The future of [`RateLimit::acquire`]: ready at once for a limit that decides
/// in memory, or a boxed future for one that asks a server.
#[must_use = "a rate-limit decision does nothing until awaited"]
pub struct Acquire<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Ready(Option<Result<(), RateLimited>>),
    Pending(Pin<Box<dyn Future<Output = Result<(), RateLimited>> + Send + 'a>>),
}

impl<'a> Acquire<'a> {
    /// A decision already made.
    pub fn ready(decision: Result<(), RateLimited>) -> Self {
        Acquire {
            inner: Inner::Ready(Some(decision)),
        }
    }

    /// A decision still to be made by `fut`.
    pub fn pending(fut: impl Future<Output = Result<(), RateLimited>> + Send + 'a) -> Self {
        Acquire {
            inner: Inner::Pending(Box::pin(fut)),
        }
    }

    /// The decision, if it was made when the future was.
    pub fn now_or_never(&mut self) -> Option<Result<(), RateLimited>> {
        match &mut self.inner {
            Inner::Ready(decision) => decision.take(),
            Inner::Pending(_) => None,
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Ready(d) => f.debug_tuple("Acquire::Ready").field(d).finish(),
            Inner::Pending(_) => f.write_str("Acquire::Pending"),
        }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<(), RateLimited>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            // Polled again after it answered: stays pending (never a second,
            // made-up answer).
            Inner::Ready(decision) => match decision.take() {
                Some(decision) => Poll::Ready(decision),
                None => Poll::Pending,
            },
            Inner::Pending(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl<C: Clock> RateLimit for RateLimiter<C> {
    /// [`check_n`](RateLimiter::check_n), answered at once; `ctx` is not read.
    fn acquire<'a>(&'a self, _ctx: &'a Context, cost: u32) -> Acquire<'a> {
        Acquire::ready(self.check_n(cost))
    }
}
