//! Rate limiters: the generic cell rate algorithm (GCRA), lock-free, in one atomic
//! word per limiter (or per key).
//!
//! - [`RateLimiter::check`] answers at once: pass, or [`RateLimited`] with when a
//!   call would pass. A check is a clock reading and one compare-and-swap; it
//!   allocates nothing and takes no lock.
//! - [`RateLimiter::until_ready`] waits on the limiter's clock until a call passes,
//!   so tokio's paused time drives it in tests. See [waiting](#waiting).
//! - [`RateLimiter::check_n`] and [`RateLimiter::until_n_ready`] let several calls
//!   (or a call that weighs several) through at once. More than the burst can never
//!   pass at once: that is refused at once as
//!   [`exceeds_capacity`](RateLimited::exceeds_capacity), never waited on.
//! - [`RateLimiter::reconfigure`] changes the rate of a live limiter.
//!
//! # Waiting
//!
//! A wait reserves its slot on its first poll (the GCRA reservation: the schedule
//! moves on by one interval at once, as if the call had passed) and sleeps exactly
//! until that slot. Waiters are therefore served in the order they arrived, each at
//! its own time, one interval apart; each costs one compare-and-swap and one
//! timer, however many wait. A waiting caller is not refused and is not counted in
//! [`rejected`](RateLimiterSnapshot::rejected); a wait that gives up at once
//! because its bound is shorter than its slot ([`until_ready_timeout`](RateLimiter::until_ready_timeout),
//! [`until_ready_with`](RateLimiter::until_ready_with)) reserves nothing and counts
//! once.
//!
//! A wait dropped before its slot gives the slot back when no reservation or call
//! came after it (the schedule moves back by its intervals). A slot in the middle
//! of the schedule cannot be given back without moving the callers behind it:
//! it stays taken and unused, so the limiter is never looser than its rate, at the
//! price of that one slot's capacity.
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
mod future;
pub(crate) mod gcra;
mod keyed;
mod shared;

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock, Timestamp, recent_resolution};
use palisade_context::Context;

pub use config::{MAX_RATE, RateLimiterConfig};
pub use error::RateLimited;
pub use future::{UntilNReady, UntilReady};
pub use keyed::{KeyedRateLimiter, KeyedRateLimiterConfig, KeyedRateLimiterSnapshot, MAX_KEYS};
pub use shared::{Acquire, RateLimit};

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

    /// Lets `n` calls through at once (or one call that weighs `n`), or says when
    /// they would pass. More than the burst never pass at once: that is refused as
    /// [`exceeds_capacity`](RateLimited::exceeds_capacity). Zero calls always pass.
    pub fn check_n(&self, n: u32) -> Result<(), RateLimited> {
        if n == 0 {
            return Ok(());
        }
        let gcra = self.gcra();
        if u64::from(n) > gcra.burst() {
            return Err(self.too_many(n, gcra.burst()));
        }
        let now = self.now().as_nanos();
        match gcra.reserve(&self.inner.tat, now, u64::from(n), 0) {
            Ok(_) => Ok(()),
            Err(wait) => Err(self.limited(Duration::from_nanos(wait))),
        }
    }

    #[cold]
    fn too_many(&self, n: u32, burst: u64) -> RateLimited {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        let e = RateLimited::too_many(n, burst);
        tracing::debug!(rate_limiter = &*self.inner.name, "{e}");
        e
    }

    /// Waits until a call passes, then lets it through: reserves the next slot on
    /// the first poll and sleeps on the limiter's clock until it (see
    /// [waiting](crate::rate#waiting)). Never refused, never counted as a rejection.
    pub fn until_ready(&self) -> UntilReady<'_, C> {
        UntilReady::new(self)
    }

    /// As [`until_ready`](RateLimiter::until_ready), for `n` calls at once (or one
    /// call that weighs `n`). Refused at once, without waiting, when `n` exceeds the
    /// burst ([`exceeds_capacity`](RateLimited::exceeds_capacity)); that is its only
    /// error.
    pub fn until_n_ready(&self, n: u32) -> UntilNReady<'_, C> {
        UntilNReady::new(self, n)
    }

    /// Waits at most `max_wait` for a call to pass. Gives up at once, without
    /// sleeping or reserving anything, when the call's slot is further away (and
    /// then counts one rejection).
    pub async fn until_ready_timeout(&self, max_wait: Duration) -> Result<(), RateLimited> {
        future::Reserve::new(self, 1, Some(max_wait)).await
    }

    /// Waits, for a caller with a [`Context`], until a call passes: gives up at
    /// once when the wait would outlast the context's deadline (the
    /// [`RateLimited`] says how long it would have been), and as soon as the
    /// context ends (giving its slot back as a dropped wait does).
    pub async fn until_ready_with(&self, ctx: &Context) -> Result<(), WaitError<RateLimited>> {
        crate::wait::under(ctx, future::Reserve::new(self, 1, ctx.remaining())).await
    }

    /// Applies a new rate to the live limiter (hot reload). The calls already let
    /// through still count: the schedule continues from where it is.
    ///
    /// The interval and the tolerance are two words (together they need more than
    /// 64 bits: an interval of up to a day in nanoseconds and a burst of up to a
    /// billion), so a check racing the change may read the old interval with the
    /// new tolerance, or the other way round. That is harmless: such a check passes
    /// only if the TAT is within the larger of the two tolerances, and moves it by
    /// at least the smaller of the two intervals, so it is never looser than the
    /// looser of the two limits, and the next check reads the new pair.
    pub fn reconfigure(&self, config: &RateLimiterConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.inner.config.lock();
        let interval = config.emission_nanos();
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::ReconfigureZeroIntervalFirst) {
            self.inner.interval.store(0, Ordering::Relaxed);
        }
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
    /// Calls refused since creation: checks that did not pass, waits that gave up
    /// at once because their slot was beyond their bound, and requests exceeding
    /// the burst. Each refused call counts once; a caller that waits and then
    /// passes counts nowhere.
    pub rejected: u64,
    /// Whether checks read the precise clock (`now()`) rather than `recent()`.
    pub precise_clock: bool,
}
