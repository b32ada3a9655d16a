use std::fmt;
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};

/// A rate limiter refused a call; it says when a call would pass.
///
/// It converts into a [`Rejection`] by [`Strategy::RateLimiter`] carrying that
/// retry-after.
///
/// Or, from [`check_n`](crate::RateLimiter::check_n) and
/// [`until_n_ready`](crate::RateLimiter::until_n_ready), it says that more calls
/// were asked for at once than the burst lets through: see
/// [`exceeds_capacity`](RateLimited::exceeds_capacity).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
    /// `(asked, burst)` when more calls were asked for at once than the burst.
    too_many: Option<(u32, u64)>,
}

impl RateLimited {
    pub(crate) fn new(retry_after: Duration) -> Self {
        RateLimited {
            retry_after,
            too_many: None,
        }
    }

    pub(crate) fn too_many(asked: u32, burst: u64) -> Self {
        RateLimited {
            retry_after: Duration::MAX,
            too_many: Some((asked, burst)),
        }
    }

    /// A refusal from a limit kept outside this crate (a [`RateLimit`](crate::RateLimit)
    /// implementation): a call would pass after `retry_after`.
    pub fn retry_in(retry_after: Duration) -> Self {
        Self::new(retry_after)
    }

    /// A refusal from a limit kept outside this crate: `asked` units were asked for
    /// at once and the burst is `burst`, so they never pass.
    pub fn over_capacity(asked: u32, burst: u64) -> Self {
        Self::too_many(asked, burst)
    }

    /// How long from the check until a call would pass (if no other call takes the
    /// capacity first); [`Duration::MAX`] when the calls
    /// [exceed the capacity](RateLimited::exceeds_capacity) and never pass.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Whether more calls were asked for at once than the limiter's burst, so that
    /// no wait would let them through. Such a request is refused at once, never
    /// waited on.
    pub fn exceeds_capacity(&self) -> bool {
        self.too_many.is_some()
    }

    /// The rejection, for the outcome taxonomy, with the retry-after (none when
    /// the calls [exceed the capacity](RateLimited::exceeds_capacity)).
    pub fn rejection(&self) -> Rejection {
        let rejection = Rejection::new(Strategy::RateLimiter);
        if self.too_many.is_some() {
            rejection
        } else {
            rejection.with_retry_after(self.retry_after)
        }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.too_many {
            Some((asked, burst)) => write!(
                f,
                "rate limit too small: {asked} calls asked for at once, the burst is {burst}"
            ),
            None => write!(f, "rate limited: try again in {:?}", self.retry_after),
        }
    }
}

impl std::error::Error for RateLimited {}

impl From<RateLimited> for Rejection {
    fn from(e: RateLimited) -> Rejection {
        e.rejection()
    }
}
