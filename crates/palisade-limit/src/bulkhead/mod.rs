//! A bulkhead: at most `max_concurrent` calls to one dependency at once, so that a
//! slow dependency cannot take every task and connection of the service with it.
//!
//! - [`Bulkhead::try_acquire`] never waits: a [`Permit`] or [`BulkheadFull`]. When
//!   nobody waits, acquiring is one compare-and-swap on an atomic counter and
//!   releasing another; nothing allocates and no lock is taken.
//! - [`Bulkhead::acquire`] waits in an optional bounded FIFO queue, at most
//!   [`max_wait`](BulkheadConfig::max_wait). A released permit goes straight to the
//!   first waiter. A waiter that is dropped (its caller's timeout or cancellation
//!   fired) leaves the queue at once; a permit granted to it meanwhile is passed on.
//! - Permits are released when dropped, whatever way the call ends.
//! - A call may take several permits at once ([`Bulkhead::try_acquire_many`],
//!   [`Bulkhead::acquire_many`]), for calls that weigh more than others. The queue
//!   stays first in, first out by call: a waiter for many permits is served as soon
//!   as they fit and is not overtaken. Asking for more than the limit is refused at
//!   once ([`BulkheadFull::exceeds_capacity`]): no wait could grant it.
//! - [`Bulkhead::close`] refuses its waiters and every later call at once
//!   ([`BulkheadFull::is_closed`]), for a service shutting down; permits held stay
//!   valid until dropped.
//! - [`Bulkhead::reconfigure`] and [`Bulkhead::set_limit`] change a live bulkhead;
//!   a higher limit is handed to the waiters at once, a lower one takes effect as
//!   calls finish (and refuses at once the waiters that asked for more permits than
//!   it).
//!
//! # Counting
//!
//! Each call counts once in the [snapshot](BulkheadSnapshot), by how it ended:
//! admitted (at once or after a wait) in no counter; refused without waiting out its
//! time (full, queue full or absent, closed, more permits than the limit) in
//! [`rejected`](BulkheadSnapshot::rejected); waited its longest wait without a permit
//! in [`timed_out`](BulkheadSnapshot::timed_out); given up by its caller while it
//! waited in [`cancelled`](BulkheadSnapshot::cancelled). The three never overlap:
//! the calls refused are `rejected + timed_out`. Only `rejected` is also reported as
//! a `debug` event (a timeout too, with its own message); a caller that wants to
//! look for a free slot first and wait afterwards uses
//! [`Bulkhead::try_acquire_uncounted`], which neither counts nor reports.
//!
//! # Example
//!
//! ```
//! use palisade_limit::{Bulkhead, BulkheadConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let bulkhead = Bulkhead::new(
//!     BulkheadConfig::new(2).with_queue(8, Duration::from_millis(50)),
//! ).unwrap();
//!
//! let a = bulkhead.try_acquire().unwrap();
//! let _b = bulkhead.try_acquire().unwrap();
//! let full = bulkhead.try_acquire().unwrap_err();
//! assert_eq!(full.rejection().strategy(), palisade_classify::Strategy::Bulkhead);
//!
//! // Waiting: nobody releases within 50 ms, so the wait runs out.
//! assert!(bulkhead.acquire().await.unwrap_err().is_timed_out());
//!
//! drop(a);
//! let _c = bulkhead.acquire().await.unwrap();
//! # }
//! ```

mod config;
pub(crate) mod core;
mod error;
mod future;
mod permit;

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock};
use palisade_context::Context;

pub use config::{BulkheadConfig, MAX_BULKHEAD_SIZE};
pub use error::BulkheadFull;
pub use future::{Acquire, AcquireMany, AcquireManyOwned, AcquireOwned};
pub use permit::{OwnedPermit, OwnedPermits, Permit, Permits};

use self::core::Core;
use crate::config::ConfigError;
use crate::sync::Arc;
use crate::wait::WaitError;

/// At most so many calls at once; see the [module docs](crate::bulkhead).
///
/// Cloning is cheap and clones share the permits.
pub struct Bulkhead<C: Clock = DefaultClock> {
    pub(crate) core: Arc<Core>,
    clock: C,
}

impl Bulkhead {
    /// A bulkhead on the default (tokio) clock.
    pub fn new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> Bulkhead<C> {
    /// A bulkhead whose queue timeouts run on `clock`.
    pub fn with_clock(config: BulkheadConfig, clock: C) -> Result<Self, ConfigError> {
        Self::named("", config, clock)
    }

    /// A bulkhead whose tracing events carry `name` (the dependency it guards).
    pub fn named(name: &str, config: BulkheadConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Bulkhead {
            core: Arc::new(Core::new(
                config.max_concurrent,
                config.max_queue,
                config.max_wait,
                name.into(),
            )),
            clock,
        })
    }

    /// A permit if one is free and nobody waits for one; never waits. A refusal
    /// counts in [`rejected`](BulkheadSnapshot::rejected) and is reported as a
    /// `debug` event; [`try_acquire_uncounted`](Bulkhead::try_acquire_uncounted)
    /// does neither.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, BulkheadFull> {
        if self.core.try_acquire() {
            Ok(Permit::new(&self.core))
        } else {
            Err(self.full())
        }
    }

    /// As [`try_acquire`](Bulkhead::try_acquire), with a permit that owns a handle to
    /// the bulkhead (for `'static` futures).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, BulkheadFull> {
        if self.core.try_acquire() {
            Ok(OwnedPermit::new(self.core.clone()))
        } else {
            Err(self.full())
        }
    }

    /// A permit if one is free and nobody waits, as
    /// [`try_acquire`](Bulkhead::try_acquire), but a refusal is neither counted nor
    /// reported: for a caller that tries for a free slot first and, if there is
    /// none, waits with [`acquire`](Bulkhead::acquire) (which counts the call once,
    /// by how it ends). The same one compare-and-swap as `try_acquire`.
    #[inline]
    pub fn try_acquire_uncounted(&self) -> Option<Permit<'_>> {
        if self.core.try_acquire() {
            Some(Permit::new(&self.core))
        } else {
            None
        }
    }

    /// `permits` permits at once if they are free and nobody waits; never waits.
    /// More permits than the limit are refused as
    /// [`exceeds_capacity`](BulkheadFull::exceeds_capacity). Zero permits are
    /// granted whenever one permit would be.
    #[inline]
    pub fn try_acquire_many(&self, permits: u32) -> Result<Permits<'_>, BulkheadFull> {
        if self.core.try_acquire_n(permits) {
            Ok(Permits::new(&self.core, permits))
        } else {
            Err(self.refuse(permits))
        }
    }

    /// As [`try_acquire_many`](Bulkhead::try_acquire_many), with permits that own a
    /// handle to the bulkhead.
    #[inline]
    pub fn try_acquire_many_owned(&self, permits: u32) -> Result<OwnedPermits, BulkheadFull> {
        if self.core.try_acquire_n(permits) {
            Ok(OwnedPermits::new(self.core.clone(), permits))
        } else {
            Err(self.refuse(permits))
        }
    }

    #[cold]
    fn full(&self) -> BulkheadFull {
        self.refuse(1)
    }

    #[cold]
    fn refuse(&self, permits: u32) -> BulkheadFull {
        let limit = self.core.limit();
        let e = if self.core.is_closed() {
            BulkheadFull::closed(limit)
        } else if permits > limit {
            BulkheadFull::too_many(limit, permits)
        } else {
            BulkheadFull::full(limit)
        };
        self.core.rejected(&e);
        e
    }

    /// A permit, waiting in the queue for at most the configured
    /// [`max_wait`](BulkheadConfig::max_wait) if none is free. Without a queue it
    /// answers at once, as [`try_acquire`](Bulkhead::try_acquire). A free permit is
    /// taken on the first poll with one compare-and-swap. The call counts once, by
    /// how it ends (see [counting](crate::bulkhead#counting)): after a
    /// [`try_acquire_uncounted`](Bulkhead::try_acquire_uncounted) that found no free
    /// slot, this is the call that counts.
    pub fn acquire(&self) -> Acquire<'_, C> {
        Acquire::new(self, None)
    }

    /// As [`acquire`](Bulkhead::acquire), waiting at most `max_wait` (for a caller
    /// with less time left than the configured wait).
    pub fn acquire_timeout(&self, max_wait: Duration) -> Acquire<'_, C> {
        Acquire::new(self, Some(max_wait))
    }

    /// As [`acquire`](Bulkhead::acquire), for a caller with a [`Context`]: waits at
    /// most the shorter of the configured wait and the context's remaining time, and
    /// gives up as soon as the context ends (leaving the queue at once).
    pub async fn acquire_with(&self, ctx: &Context) -> Result<Permit<'_>, WaitError<BulkheadFull>> {
        crate::wait::under(ctx, Acquire::new(self, ctx.remaining())).await
    }

    /// As [`acquire_with`](Bulkhead::acquire_with), with an owned permit.
    pub async fn acquire_owned_with(
        &self,
        ctx: &Context,
    ) -> Result<OwnedPermit, WaitError<BulkheadFull>> {
        let acquire = AcquireOwned::new(self.clone(), ctx.remaining());
        crate::wait::under(ctx, acquire).await
    }

    /// As [`acquire`](Bulkhead::acquire), with a permit that owns a handle to the
    /// bulkhead.
    pub fn acquire_owned(&self) -> AcquireOwned<C> {
        AcquireOwned::new(self.clone(), None)
    }

    /// `permits` permits at once, waiting in the queue as
    /// [`acquire`](Bulkhead::acquire) does for one. More permits than the limit are
    /// refused at once as [`exceeds_capacity`](BulkheadFull::exceeds_capacity), and
    /// so is a waiter when the limit is lowered below its permits: it never waits
    /// for what cannot come.
    pub fn acquire_many(&self, permits: u32) -> AcquireMany<'_, C> {
        AcquireMany::new(self, permits, None)
    }

    /// As [`acquire_many`](Bulkhead::acquire_many), with permits that own a handle
    /// to the bulkhead.
    pub fn acquire_many_owned(&self, permits: u32) -> AcquireManyOwned<C> {
        AcquireManyOwned::new(self.clone(), permits, None)
    }

    /// Closes the bulkhead, for a service shutting down: every caller waiting in the
    /// queue is refused at once, and so is every acquisition from now on, with
    /// [`is_closed`](BulkheadFull::is_closed). Permits already held (and permits
    /// granted to a waiter just before) stay valid until dropped. Closing is for
    /// good; closing again does nothing.
    pub fn close(&self) {
        if self.core.close() {
            tracing::info!(bulkhead = self.core.name(), "bulkhead closed");
        }
    }

    /// Whether the bulkhead has been [closed](Bulkhead::close).
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// Changes the limit of concurrent calls (`1..=1_000_000`). A higher limit
    /// admits waiters at once; a lower one takes effect as calls finish.
    pub fn set_limit(&self, max_concurrent: u32) -> Result<(), ConfigError> {
        config::check_range_limit(max_concurrent)?;
        let old = self.core.limit();
        self.core.set_limit(max_concurrent);
        if old != max_concurrent {
            tracing::info!(
                bulkhead = self.core.name(),
                old,
                new = max_concurrent,
                "bulkhead limit changed"
            );
        }
        Ok(())
    }

    /// Applies a new configuration to the live bulkhead (hot reload): the limit as
    /// [`set_limit`](Bulkhead::set_limit); the queue bound and the longest wait for
    /// callers that start waiting from now on.
    pub fn reconfigure(&self, config: &BulkheadConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.core.set_max_queue(config.max_queue);
        self.core.set_max_wait(config.max_wait);
        self.set_limit(config.max_concurrent)
    }

    /// The current limit of concurrent calls.
    pub fn limit(&self) -> u32 {
        self.core.limit()
    }

    /// The counters and settings of the moment.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let (in_flight, waiting) = self.core.load();
        BulkheadSnapshot {
            limit: self.core.limit(),
            in_flight,
            waiting,
            max_queue: self.core.max_queue(),
            rejected: self.core.rejected_total(),
            timed_out: self.core.timed_out(),
            cancelled: self.core.cancelled_total(),
            closed: self.core.is_closed(),
        }
    }

    /// The clock the queue timeouts run on.
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

impl<C: Clock> Clone for Bulkhead<C> {
    fn clone(&self) -> Self {
        Bulkhead {
            core: self.core.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Bulkhead<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.core.name())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A bulkhead's counters and settings at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// The limit of concurrent calls.
    pub limit: u32,
    /// Permits held (including those granted to waiters not yet polled).
    pub in_flight: u32,
    /// Callers in the queue.
    pub waiting: u32,
    /// The most callers the queue holds.
    pub max_queue: u32,
    /// Calls refused without waiting out their time, since creation: the bulkhead
    /// and its queue full (or no queue), the bulkhead closed (before or while the
    /// call waited), or more permits asked for than the limit. Each refused call
    /// counts once; see [counting](crate::bulkhead#counting).
    pub rejected: u64,
    /// Callers that waited their longest wait without a permit, since creation (not
    /// also in `rejected`). A wait bounded by a context's deadline that runs out
    /// counts here.
    pub timed_out: u64,
    /// Callers that gave up while they waited in the queue (their future dropped,
    /// or their context cancelled), since creation. They were not refused: not in
    /// `rejected` nor `timed_out`.
    pub cancelled: u64,
    /// Whether the bulkhead has been [closed](Bulkhead::close).
    pub closed: bool,
}
