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
//! - [`Bulkhead::reconfigure`] and [`Bulkhead::set_limit`] change a live bulkhead;
//!   a higher limit is handed to the waiters at once, a lower one takes effect as
//!   calls finish.
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
pub use future::{Acquire, AcquireOwned};
pub use permit::{OwnedPermit, Permit};

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

    /// A permit if one is free and nobody waits for one; never waits.
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

    #[cold]
    fn full(&self) -> BulkheadFull {
        let e = BulkheadFull::full(self.core.limit());
        self.core.rejected(&e);
        e
    }

    /// A permit, waiting in the queue for at most the configured
    /// [`max_wait`](BulkheadConfig::max_wait) if none is free. Without a queue it
    /// answers at once, as [`try_acquire`](Bulkhead::try_acquire).
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
    /// Calls refused at once (bulkhead and queue full), since creation.
    pub rejected: u64,
    /// Callers that waited their longest wait without a permit, since creation.
    pub timed_out: u64,
}
