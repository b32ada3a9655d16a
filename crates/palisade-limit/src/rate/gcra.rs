//! The generic cell rate algorithm on one atomic word.
//!
//! The word holds the theoretical arrival time (TAT): when the next call would be
//! due if calls came exactly at the steady rate. A call at `now` passes if
//! `TAT <= now + tolerance`, and then moves the TAT to `max(TAT, now) + interval`.
//! `tolerance = (burst - 1) * interval` lets `burst` calls through at once after a
//! quiet spell. A refused call changes nothing and learns that it would pass after
//! `TAT - tolerance - now`.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// The two numbers of a GCRA, in nanoseconds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    pub(crate) interval: u64,
    pub(crate) tolerance: u64,
}

impl Gcra {
    /// The decision at `now` for a cell whose TAT is `tat`: the new TAT, or how
    /// many nanoseconds until the call would pass.
    #[inline]
    pub(crate) fn decide(self, tat: u64, now: u64) -> Result<u64, u64> {
        let latest = now.saturating_add(self.tolerance);
        if tat > latest {
            Err(tat - latest)
        } else {
            Ok(tat.max(now).saturating_add(self.interval))
        }
    }

    /// Applies one call at `now` to the TAT in `cell`: one CAS unless another call
    /// changed the cell in between.
    #[inline]
    pub(crate) fn check(self, cell: &AtomicU64, now: u64) -> Result<(), Duration> {
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::GcraLoadThenStore) {
            let tat = cell.load(Ordering::Relaxed);
            let next = self.decide(tat, now).map_err(Duration::from_nanos)?;
            cell.store(next, Ordering::Relaxed);
            return Ok(());
        }
        // Relaxed: the word is the whole state; it publishes nothing else.
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            match self.decide(tat, now) {
                Err(wait) => return Err(Duration::from_nanos(wait)),
                Ok(next) => match cell.compare_exchange_weak(
                    tat,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(actual) => tat = actual,
                },
            }
        }
    }

    /// How many calls would pass at `now`, one after another.
    pub(crate) fn available(self, tat: u64, now: u64) -> u64 {
        let latest = now.saturating_add(self.tolerance);
        if tat > latest {
            return 0;
        }
        // Each call moves the TAT (from at least `now`) by one interval; calls pass
        // while the TAT before them is at most `latest`.
        (latest - tat.max(now)) / self.interval.max(1) + 1
    }
}
