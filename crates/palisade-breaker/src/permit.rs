//! Permits: the right to run one call, and the duty to report how it ended.

use std::fmt;

use palisade_classify::Outcome;
use palisade_clock::{Clock, DefaultClock};

use crate::breaker::Inner;
use crate::state::Word;
use crate::sync::Arc;

/// What a permit was admitted as.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Ticket {
    /// A call admitted by the closed state's fast path (closed, calls untimed):
    /// `word` is the state word it was admitted under, compared whole when the
    /// outcome comes back.
    Fast { word: Word },
    /// A call in the closed (or forced-closed) state of `generation`; `started` is
    /// the coarse time it began, when calls are timed.
    Closed { generation: u64, started: u64 },
    /// A half-open probe holding slot `slot` under lease `lease`.
    Probe {
        generation: u64,
        slot: u32,
        lease: u64,
        started: u64,
    },
    /// A call that counts for nothing: the breaker is disabled.
    Untracked,
    /// In metrics-only mode, a call the breaker would have rejected (or a call
    /// beyond the half-open probes): its outcome goes into the window and trips
    /// nothing, unless the breaker has changed state since. `started` is the coarse
    /// time it began, when calls are timed.
    Shadow { generation: u64, started: u64 },
    /// A [`Call`](crate::Call) not yet polled: not yet admitted.
    Unpolled,
    /// Already recorded.
    Done,
}

/// The right to run one call through a [`Breaker`](crate::Breaker).
///
/// Run the call, then hand its outcome to [`record`](Permit::record). Dropping the
/// permit without recording counts nothing and frees its half-open probe slot, so a
/// cancelled call is never taken for a success and cannot wedge the breaker.
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct Permit<'a, C: Clock = DefaultClock> {
    inner: &'a Inner<C>,
    ticket: Ticket,
}

impl<'a, C: Clock> Permit<'a, C> {
    #[inline]
    pub(crate) fn new(inner: &'a Inner<C>, ticket: Ticket) -> Self {
        Permit { inner, ticket }
    }

    /// Reports how the call ended. Successes and failures count; ignored and
    /// rejected outcomes free the slot and count nothing. An outcome from a call
    /// admitted before the breaker changed state is dropped.
    #[inline(always)]
    pub fn record(self, outcome: Outcome) {
        // Nothing to release on drop once the outcome is handed over.
        let this = std::mem::ManuallyDrop::new(self);
        this.inner.complete(this.ticket, outcome);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(self.ticket, Ticket::Probe { .. })
    }
}

impl<C: Clock> Drop for Permit<'_, C> {
    #[inline]
    fn drop(&mut self) {
        if let Ticket::Probe { .. } = self.ticket {
            self.inner.abandon(self.ticket);
        }
    }
}

impl<C: Clock> fmt::Debug for Permit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// A [`Permit`] that holds a handle to its breaker instead of a borrow, from
/// [`Breaker::try_acquire_owned`](crate::Breaker::try_acquire_owned).
#[must_use = "a permit records nothing unless its outcome is recorded"]
pub struct OwnedPermit<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
    ticket: Ticket,
}

impl<C: Clock> OwnedPermit<C> {
    pub(crate) fn new(inner: Arc<Inner<C>>, ticket: Ticket) -> Self {
        OwnedPermit { inner, ticket }
    }

    /// Reports how the call ended, as [`Permit::record`] does.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        let ticket = std::mem::replace(&mut self.ticket, Ticket::Done);
        self.inner.complete(ticket, outcome);
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        matches!(self.ticket, Ticket::Probe { .. })
    }
}

impl<C: Clock> Drop for OwnedPermit<C> {
    fn drop(&mut self) {
        if let Ticket::Probe { .. } = self.ticket {
            self.inner.abandon(self.ticket);
        }
    }
}

impl<C: Clock> fmt::Debug for OwnedPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}
