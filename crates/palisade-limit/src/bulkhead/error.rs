use std::fmt;
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};

/// A bulkhead refused a call: all permits were taken and the queue was full or
/// absent, or no permit came free within the longest wait; or the bulkhead is
/// [closed](crate::Bulkhead::close), or the call asked for more permits than the
/// limit (which no wait could grant).
///
/// It converts into a [`Rejection`] by [`Strategy::Bulkhead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    reason: Reason,
    limit: u32,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Reason {
    Full,
    QueueFull(u32),
    TimedOut(Duration),
    Closed,
    TooMany(u32),
}

impl BulkheadFull {
    pub(crate) fn full(limit: u32) -> Self {
        BulkheadFull {
            reason: Reason::Full,
            limit,
        }
    }

    pub(crate) fn queue_full(limit: u32, max_queue: u32) -> Self {
        BulkheadFull {
            reason: Reason::QueueFull(max_queue),
            limit,
        }
    }

    pub(crate) fn timed_out(limit: u32, waited: Duration) -> Self {
        BulkheadFull {
            reason: Reason::TimedOut(waited),
            limit,
        }
    }

    pub(crate) fn closed(limit: u32) -> Self {
        BulkheadFull {
            reason: Reason::Closed,
            limit,
        }
    }

    pub(crate) fn too_many(limit: u32, permits: u32) -> Self {
        BulkheadFull {
            reason: Reason::TooMany(permits),
            limit,
        }
    }

    /// The rejection, for the outcome taxonomy. A bulkhead cannot know when a
    /// permit will come free, so it carries no retry-after.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::Bulkhead)
    }

    /// Whether the caller could not even join the wait queue because it was full.
    pub fn is_queue_full(&self) -> bool {
        matches!(self.reason, Reason::QueueFull(_))
    }

    /// Whether the caller waited in the queue and no permit came free in time.
    pub fn is_timed_out(&self) -> bool {
        matches!(self.reason, Reason::TimedOut(_))
    }

    /// Whether the bulkhead was [closed](crate::Bulkhead::close): before the call,
    /// or while it waited.
    pub fn is_closed(&self) -> bool {
        matches!(self.reason, Reason::Closed)
    }

    /// Whether the call asked for more permits than the limit, so that no wait
    /// could have granted them (see [`Bulkhead::try_acquire_many`](crate::Bulkhead::try_acquire_many)).
    /// Such a call is refused at once, never queued.
    pub fn exceeds_capacity(&self) -> bool {
        matches!(self.reason, Reason::TooMany(_))
    }

    /// The limit of concurrent calls when the call was refused.
    pub fn limit(&self) -> u32 {
        self.limit
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            Reason::Full => write!(f, "bulkhead full: {} calls in flight", self.limit),
            Reason::QueueFull(q) => write!(
                f,
                "bulkhead full: {} calls in flight and {q} waiting",
                self.limit
            ),
            Reason::TimedOut(d) => write!(
                f,
                "bulkhead full: {} calls in flight and none finished within {d:?}",
                self.limit
            ),
            Reason::Closed => write!(f, "bulkhead closed"),
            Reason::TooMany(n) => write!(
                f,
                "bulkhead too small: {n} permits asked for at once, the limit is {}",
                self.limit
            ),
        }
    }
}

impl std::error::Error for BulkheadFull {}

impl From<BulkheadFull> for Rejection {
    fn from(e: BulkheadFull) -> Rejection {
        e.rejection()
    }
}
