use std::fmt;
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};

/// A rate limiter refused a call; it says when a call would pass.
///
/// It converts into a [`Rejection`] by [`Strategy::RateLimiter`] carrying that
/// retry-after.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    retry_after: Duration,
}

impl RateLimited {
    pub(crate) fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }

    /// How long from the check until a call would pass (if no other call takes the
    /// capacity first).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The rejection, for the outcome taxonomy, with the retry-after.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::RateLimiter).with_retry_after(self.retry_after)
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limited: try again in {:?}", self.retry_after)
    }
}

impl std::error::Error for RateLimited {}

impl From<RateLimited> for Rejection {
    fn from(e: RateLimited) -> Rejection {
        e.rejection()
    }
}
