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

    /// The most calls that pass at one instant: `tolerance / interval + 1`.
    #[inline]
    pub(crate) fn burst(self) -> u64 {
        self.tolerance / self.interval.max(1) + 1
    }

    /// Reserves `n` calls at `now` (the classic GCRA reservation): moves the TAT
    /// on by `n` intervals from `max(TAT, now)` at once, and returns how many
    /// nanoseconds until the reserved calls are due (0: now) with the TAT written.
    /// When that wait would be longer than `max_wait`, reserves nothing and
    /// returns the wait as the error. One CAS unless another call changed the cell
    /// in between. `n` is at least 1.
    #[inline]
    pub(crate) fn reserve(
        self,
        cell: &AtomicU64,
        now: u64,
        n: u64,
        max_wait: u64,
    ) -> Result<(u64, u64), u64> {
        let latest = now.saturating_add(self.tolerance);
        let mut tat = cell.load(Ordering::Relaxed);
        loop {
            let base = tat.max(now);
            // The last of the `n` calls is due when the TAT before it is `latest`.
            let last = base.saturating_add(self.interval.saturating_mul(n - 1));
            let wait = last.saturating_sub(latest);
            if wait > max_wait {
                return Err(wait);
            }
            let next = base.saturating_add(self.interval.saturating_mul(n));
            #[cfg(loom)]
            if crate::sync::broken::is(crate::sync::broken::Bug::ReserveLoadThenStore) {
                cell.store(next, Ordering::Relaxed);
                return Ok((wait, next));
            }
            match cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok((wait, next)),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Gives back a reservation that wrote `written` and took `amount`
    /// nanoseconds, if no call has changed the TAT since; returns whether it did.
    /// A reservation with others after it cannot be taken out of the middle of the
    /// schedule: it stays taken, so the limiter is never looser than its rate.
    pub(crate) fn refund(cell: &AtomicU64, written: u64, amount: u64) -> bool {
        cell.compare_exchange(
            written,
            written.saturating_sub(amount),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
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
