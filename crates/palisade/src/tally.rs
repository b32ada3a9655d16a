//! A pipeline's own counters: what health and snapshots read of its calls.
//!
//! A healthy call adds one to one counter (a relaxed atomic add, on a cache
//! line of its own); every other count is on a failure path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use palisade_classify::Outcome;

/// Counts of a pipeline's attempts and executions since it was built.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    succeeded: Line,
    failed: AtomicU64,
    timeouts: AtomicU64,
    rejected: AtomicU64,
    executions_failed: AtomicU64,
    fallback_served: AtomicU64,
    fallback_failed: AtomicU64,
}

/// The success counter, alone on its cache line: the failure counters are
/// written rarely and must not make every success miss.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line(AtomicU64);

/// A pipeline's counts of its attempts and executions since it was built
/// ([`PipelineSnapshot::calls`](crate::PipelineSnapshot::calls)). Each only
/// grows; a pipeline replaced by a reload starts again from zero.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallCounts {
    /// Attempts that succeeded.
    pub succeeded: u64,
    /// Attempts that failed: a transient or permanent outcome (an `Ok` the
    /// classifier calls a failure included), a timeout, a panic.
    pub failed: u64,
    /// Attempts that ended by a timeout: their attempt timeout, or the total
    /// timeout giving up the attempt in flight (which is counted in `failed`
    /// too).
    pub timeouts: u64,
    /// Attempts refused by the breaker, the rate limiter or the bulkhead.
    pub rejected: u64,
    /// Executions that ended in an error, before any fallback.
    pub executions_failed: u64,
    /// Executions a fallback of this pipeline ([`Pipeline::with_fallback`](crate::Pipeline::with_fallback)) answered.
    pub fallback_served: u64,
    /// Executions whose fallback failed too.
    pub fallback_failed: u64,
}

impl Tally {
    /// An attempt that was made ended with `outcome`.
    #[inline(always)]
    pub(crate) fn attempt(&self, outcome: &Outcome) {
        if outcome.is_success() {
            self.succeeded.0.fetch_add(1, Relaxed);
        } else {
            self.unsuccessful(outcome);
        }
    }

    #[cold]
    #[inline(never)]
    fn unsuccessful(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Rejected(_) => self.rejected(),
            o if o.is_failure() => {
                self.failed.fetch_add(1, Relaxed);
            }
            // Ignored: neither a success nor a failure.
            _ => {}
        }
    }

    /// An attempt was refused by a strategy.
    #[cold]
    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// An attempt or an execution ended by a timeout.
    #[cold]
    pub(crate) fn timed_out(&self) {
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// The total timeout gave up the attempt in flight: a failed attempt, ended
    /// by a timeout.
    #[cold]
    pub(crate) fn total_timeout(&self) {
        self.failed.fetch_add(1, Relaxed);
        self.timeouts.fetch_add(1, Relaxed);
    }

    /// An execution ended in an error (before any fallback).
    #[cold]
    pub(crate) fn execution_failed(&self) {
        self.executions_failed.fetch_add(1, Relaxed);
    }

    /// A fallback answered an execution (`true`) or failed too (`false`).
    #[cold]
    pub(crate) fn fallback(&self, served: bool) {
        if served {
            self.fallback_served.fetch_add(1, Relaxed);
        } else {
            self.fallback_failed.fetch_add(1, Relaxed);
        }
    }

    /// The counts now (each read on its own: a copy taken while calls run may
    /// be a call apart between counters).
    pub(crate) fn counts(&self) -> CallCounts {
        CallCounts {
            succeeded: self.succeeded.0.load(Relaxed),
            failed: self.failed.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            executions_failed: self.executions_failed.load(Relaxed),
            fallback_served: self.fallback_served.load(Relaxed),
            fallback_failed: self.fallback_failed.load(Relaxed),
        }
    }
}
