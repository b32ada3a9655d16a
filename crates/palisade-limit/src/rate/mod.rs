//! Rate limiters: the generic cell rate algorithm (GCRA), lock-free, in one atomic
//! word per limiter (or per key).
//!
//! - [`RateLimiter::check`] answers at once: pass, or [`RateLimited`] with when a
//!   call would pass. A check is a clock reading and one compare-and-swap; it
//!   allocates nothing and takes no lock.
//! - [`RateLimiter::until_ready`] waits on the limiter's clock until a call passes,
//!   so tokio's paused time drives it in tests. It reserves nothing while it
//!   sleeps, so dropping it at any point leaves the limiter as it was.
//! - [`RateLimiter::reconfigure`] changes the rate of a live limiter.
//!
//! # Which clock reading
//!
//! GCRA needs the time on every check, and reading the system clock is most of a
//! check's cost. [`Clock::recent`] is far cheaper but lags `now()` by up to `δ`
//! ([`recent_resolution`], plus scheduling delays). A limiter reads `recent()` when
//! its burst spans at least [`COARSE_CLOCK_FACTOR`] resolutions
//! (`burst × period / rate ≥ 4 δ`), and `now()` otherwise. Why that bound:
//!
//! - a lagging reading only ever makes one check stricter; over any window the
//!   limiter admits at most `δ / interval` calls more than an exact GCRA, which the
//!   bound keeps under a quarter of the burst;
//! - the clock advancing in steps of `δ` admits in bursts of up to `δ / interval`
//!   calls, and the burst's credit absorbs such a step four times over, so the long-run
//!   rate is exact (with a smaller burst a frozen reading would starve a fast rate);
//! - retry-after hints may be up to `δ` longer than needed, never shorter.
//!
//! Narrow bursts at fast rates (a burst of 1 at 1000 calls a second) read `now()` and
//! keep the schedule exact. On a clock whose `recent()` is exact (the manual clock;
//! the tokio clock under `test-util`) both readings agree.
//!
//! # Example
//!
//! ```
//! use palisade_limit::{RateLimiter, RateLimiterConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 10 calls a second, at most 2 at once.
//! let limiter = RateLimiter::new(RateLimiterConfig::per_second(10).with_burst(2)).unwrap();
//! assert!(limiter.check().is_ok());
//! assert!(limiter.check().is_ok());
//! let limited = limiter.check().unwrap_err();
//! assert_eq!(limited.retry_after(), Duration::from_millis(100));
//!
//! limiter.until_ready().await; // 100 ms of (virtual) time later
//! # }
//! ```

mod config;
mod error;
pub(crate) mod gcra;
mod keyed;

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock, Timestamp, recent_resolution};
use palisade_context::Context;

pub use config::{MAX_RATE, RateLimiterConfig};
pub use error::RateLimited;
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterConfig, KeyedRateLimiterSnapshot, MAX_KEYS};

use self::gcra::Gcra;
use crate::config::ConfigError;
use crate::sync::{Arc, AtomicBool, AtomicU64, CachePadded, Mutex, Ordering};
use crate::wait::WaitError;

/// A rate limiter reads the cheap [`Clock::recent`] when its burst spans at least
/// this many resolutions of that reading; see the
/// [module docs](crate::rate#which-clock-reading).
pub const COARSE_CLOCK_FACTOR: u32 = 4;

/// Whether a limiter whose burst spans `burst_nanos` may read the coarse clock.
pub(crate) fn coarse_enough(burst_nanos: u128) -> bool {
    burst_nanos >= recent_resolution().as_nanos() * u128::from(COARSE_CLOCK_FACTOR)
}

/// A GCRA rate limiter for all calls to one dependency; see the
/// [module docs](crate::rate).
///
/// Cloning is cheap and clones share the limit.
pub struct RateLimiter<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C> {
    /// The theoretical arrival time, in nanoseconds on the clock.
    tat: CachePadded<AtomicU64>,
    interval: AtomicU64,
    tolerance: AtomicU64,
    coarse: AtomicBool,
    rejected: AtomicU64,
    clock: C,
    config: Mutex<RateLimiterConfig>,
    name: Box<str>,
}

impl RateLimiter {
    /// A rate limiter on the default (tokio) clock.
    pub fn new(config: RateLimiterConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A rate limiter on `clock`.
    pub fn with_clock(config: RateLimiterConfig, clock: C) -> Result<Self, ConfigError> {
        Self::named("", config, clock)
    }

    /// A rate limiter whose tracing events carry `name`.
    pub fn named(name: &str, config: RateLimiterConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let interval = config.emission_nanos();
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                tat: CachePadded::new(AtomicU64::new(0)),
                interval: AtomicU64::new(interval),
                tolerance: AtomicU64::new(config.tolerance_nanos()),
                coarse: AtomicBool::new(coarse_enough(config.burst_nanos())),
                rejected: AtomicU64::new(0),
                clock,
                config: Mutex::new(config),
                name: name.into(),
            }),
        })
    }

    #[inline]
    fn gcra(&self) -> Gcra {
        Gcra {
            interval: self.inner.interval.load(Ordering::Relaxed),
            tolerance: self.inner.tolerance.load(Ordering::Relaxed),
        }
    }

    #[inline]
    fn now(&self) -> Timestamp {
        if self.inner.coarse.load(Ordering::Relaxed) {
            self.inner.clock.recent()
        } else {
            self.inner.clock.now()
        }
    }

    /// Lets one call through now, or says when one would pass.
    #[inline]
    pub fn check(&self) -> Result<(), RateLimited> {
        let now = self.now().as_nanos();
        match self.gcra().check(&self.inner.tat, now) {
            Ok(()) => Ok(()),
            Err(wait) => Err(self.limited(wait)),
        }
    }

    #[cold]
    fn limited(&self, wait: Duration) -> RateLimited {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        let e = RateLimited::new(wait);
        tracing::debug!(rate_limiter = &*self.inner.name, retry_after = ?wait, "rate limited");
        e
    }

    /// Waits until a call passes, then lets it through. Sleeps on the limiter's
    /// clock; holds nothing while it sleeps.
    pub async fn until_ready(&self) {
        loop {
            match self.check() {
                Ok(()) => return,
                Err(e) => self.inner.clock.sleep(e.retry_after()).await,
            }
        }
    }

    /// Waits at most `max_wait` for a call to pass. Gives up at once, without
    /// sleeping, when the limiter already knows the wait is longer.
    pub async fn until_ready_timeout(&self, max_wait: Duration) -> Result<(), RateLimited> {
        let deadline = self.inner.clock.now().saturating_add(max_wait);
        loop {
            match self.check() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let left = deadline.saturating_duration_since(self.inner.clock.now());
                    if e.retry_after() > left {
                        return Err(e);
                    }
                    self.inner.clock.sleep(e.retry_after()).await;
                }
            }
        }
    }

    /// Waits, for a caller with a [`Context`], until a call passes: gives up at
    /// once when the wait would outlast the context's deadline (the
    /// [`RateLimited`] says how long it would have been), and as soon as the
    /// context ends.
    pub async fn until_ready_with(&self, ctx: &Context) -> Result<(), WaitError<RateLimited>> {
        crate::wait::under(ctx, async {
            loop {
                match self.check() {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        if ctx.remaining().is_some_and(|left| e.retry_after() > left) {
                            return Err(e);
                        }
                        self.inner.clock.sleep(e.retry_after()).await;
                    }
                }
            }
        })
        .await
    }

    /// Applies a new rate to the live limiter (hot reload). The calls already let
    /// through still count: the schedule continues from where it is.
    pub fn reconfigure(&self, config: &RateLimiterConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.inner.config.lock();
        let interval = config.emission_nanos();
        self.inner.interval.store(interval, Ordering::Relaxed);
        self.inner
            .tolerance
            .store(config.tolerance_nanos(), Ordering::Relaxed);
        self.inner
            .coarse
            .store(coarse_enough(config.burst_nanos()), Ordering::Relaxed);
        if *current != *config {
            tracing::info!(
                rate_limiter = &*self.inner.name,
                rate = config.rate,
                period = ?config.period,
                burst = config.effective_burst(),
                "rate limit changed"
            );
        }
        *current = config.clone();
        Ok(())
    }

    /// The configuration in effect.
    pub fn config(&self) -> RateLimiterConfig {
        self.inner.config.lock().clone()
    }

    /// The counters of the moment.
    pub fn snapshot(&self) -> RateLimiterSnapshot {
        let now = self.inner.clock.now().as_nanos();
        let tat = self.inner.tat.load(Ordering::Relaxed);
        RateLimiterSnapshot {
            available: self.gcra().available(tat, now),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
            precise_clock: !self.inner.coarse.load(Ordering::Relaxed),
        }
    }

    /// The clock the limiter reads.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }
}

impl<C: Clock> Clone for RateLimiter<C> {
    fn clone(&self) -> Self {
        RateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &&*self.inner.name)
            .field("config", &self.config())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A rate limiter's counters at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimiterSnapshot {
    /// How many calls would pass now, one after another.
    pub available: u64,
    /// Calls refused since creation.
    pub rejected: u64,
    /// Whether checks read the precise clock (`now()`) rather than `recent()`.
    pub precise_clock: bool,
}
