//! Adaptive concurrency limits: a bulkhead whose limit follows what the dependency
//! can take, learned from each call's latency and whether it was dropped.
//!
//! Three algorithms, with Netflix concurrency-limits semantics and defaults:
//!
//! - [`AimdConfig`]: additive increase, multiplicative decrease on drops and slow
//!   calls. Reacts to overload the dependency signals (rejections, timeouts).
//! - [`Gradient2Config`]: follows the ratio of long-term to current latency, so it
//!   backs off as soon as queueing makes calls slower, before anything fails.
//! - [`VegasConfig`]: estimates the calls queued at the dependency from the lowest
//!   latency seen and the latest one (TCP Vegas), and keeps that queue small.
//!
//! Each call takes an [`AdaptivePermit`] from [`AdaptiveLimiter::try_acquire`] and
//! reports how it ended ([`AdaptivePermit::success`], [`dropped`](AdaptivePermit::dropped),
//! or [`record`](AdaptivePermit::record) with its [`Outcome`]); the permit measures
//! the latency. A permit dropped without a report (the caller was cancelled) adds no
//! sample. Reports update the algorithm under a lock that is only ever tried: a
//! report that finds another being applied is skipped (counted in the snapshot),
//! so no call waits for the algorithm.
//!
//! # Example
//!
//! ```
//! use palisade_clock::ManualClock;
//! use palisade_limit::adaptive::{AdaptiveConfig, AdaptiveLimiter, AimdConfig};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let limiter = AdaptiveLimiter::with_clock(AdaptiveConfig::Aimd(AimdConfig::default()), clock.clone())
//!     .unwrap();
//! assert_eq!(limiter.limit(), 20);
//!
//! let permit = limiter.try_acquire().unwrap();
//! clock.advance(Duration::from_millis(15));
//! permit.dropped(); // the dependency refused: back off
//! assert_eq!(limiter.limit(), 20); // never below min_limit (20 by default)
//! ```

mod aimd;
mod gradient2;
mod vegas;

use std::fmt;
use std::time::Duration;

use palisade_classify::{Outcome, Rejection, Strategy};
use palisade_clock::{Clock, DefaultClock, Timestamp};
use serde::{Deserialize, Serialize};

pub use aimd::AimdConfig;
pub use gradient2::Gradient2Config;
pub use vegas::VegasConfig;

use self::aimd::Aimd;
use self::gradient2::Gradient2;
use self::vegas::Vegas;
use crate::bulkhead::{Bulkhead, BulkheadConfig, MAX_BULKHEAD_SIZE, OwnedPermit};
use crate::config::{ConfigError, check_range};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// Which algorithm moves the limit, with its settings. In serde form the
/// algorithm is named by an `algorithm` field:
///
/// ```
/// use palisade_limit::adaptive::AdaptiveConfig;
///
/// let config: AdaptiveConfig =
///     serde_json::from_str(r#"{ "algorithm": "gradient2", "max_limit": 500 }"#).unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdaptiveConfig {
    /// Additive increase, multiplicative decrease.
    Aimd(AimdConfig),
    /// Gradient2.
    Gradient2(Gradient2Config),
    /// TCP Vegas.
    Vegas(VegasConfig),
}

impl Default for AdaptiveConfig {
    /// Gradient2: it needs no failure to back off, only slower calls.
    fn default() -> Self {
        AdaptiveConfig::Gradient2(Gradient2Config::default())
    }
}

impl AdaptiveConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            AdaptiveConfig::Aimd(c) => c.validate(),
            AdaptiveConfig::Gradient2(c) => c.validate(),
            AdaptiveConfig::Vegas(c) => c.validate(),
        }
    }

    pub(crate) fn initial_limit(&self) -> u32 {
        match self {
            AdaptiveConfig::Aimd(c) => c.initial_limit,
            AdaptiveConfig::Gradient2(c) => c.initial_limit,
            AdaptiveConfig::Vegas(c) => c.initial_limit,
        }
    }
}

pub(crate) fn check_bounds(initial: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    check_range("max_limit", max, 1, MAX_BULKHEAD_SIZE)?;
    check_range("min_limit", min, 1, max)?;
    check_range("initial_limit", initial, min, max)
}

/// One finished call, as the algorithms see it.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) rtt: Duration,
    /// Calls in flight when this one started, itself included.
    pub(crate) in_flight: u32,
    pub(crate) dropped: bool,
}

#[derive(Debug)]
pub(crate) enum Algorithm {
    Aimd(Aimd),
    Gradient2(Gradient2),
    Vegas(Vegas),
}

impl Algorithm {
    pub(crate) fn new(config: AdaptiveConfig) -> Self {
        match config {
            AdaptiveConfig::Aimd(c) => Algorithm::Aimd(Aimd::new(c)),
            AdaptiveConfig::Gradient2(c) => Algorithm::Gradient2(Gradient2::new(c)),
            AdaptiveConfig::Vegas(c) => Algorithm::Vegas(Vegas::new(c)),
        }
    }

    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        match self {
            Algorithm::Aimd(a) => a.update(sample),
            Algorithm::Gradient2(g) => g.update(sample),
            Algorithm::Vegas(v) => v.update(sample),
        }
    }
}

/// The adaptive limit was reached: the call was refused at once.
///
/// It converts into a [`Rejection`] by [`Strategy::AdaptiveLimit`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LimitReached {
    limit: u32,
}

impl LimitReached {
    /// The limit in effect when the call was refused.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The rejection, for the outcome taxonomy (no retry-after: a slot frees when
    /// some call finishes).
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::AdaptiveLimit)
    }
}

impl fmt::Display for LimitReached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "adaptive concurrency limit of {} reached", self.limit)
    }
}

impl std::error::Error for LimitReached {}

impl From<LimitReached> for Rejection {
    fn from(e: LimitReached) -> Rejection {
        e.rejection()
    }
}

/// A bulkhead whose limit an algorithm moves; see the [module docs](self).
///
/// Cloning is cheap and clones share the limit.
pub struct AdaptiveLimiter<C: Clock = DefaultClock> {
    bulkhead: Bulkhead<C>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    algorithm: Mutex<Algorithm>,
    config: Mutex<AdaptiveConfig>,
    samples: AtomicU64,
    drops: AtomicU64,
    skipped: AtomicU64,
}

impl AdaptiveLimiter {
    /// An adaptive limiter on the default (tokio) clock.
    pub fn new(config: AdaptiveConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> AdaptiveLimiter<C> {
    /// An adaptive limiter measuring latency on `clock`.
    pub fn with_clock(config: AdaptiveConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let bulkhead = Bulkhead::named(
            "adaptive",
            BulkheadConfig::new(config.initial_limit()),
            clock,
        )?;
        Ok(AdaptiveLimiter {
            bulkhead,
            shared: Arc::new(Shared {
                algorithm: Mutex::new(Algorithm::new(config.clone())),
                config: Mutex::new(config),
                samples: AtomicU64::new(0),
                drops: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
            }),
        })
    }

    /// A permit if the limit allows one more call now; never waits.
    pub fn try_acquire(&self) -> Result<AdaptivePermit<C>, LimitReached> {
        match self.bulkhead.try_acquire_owned() {
            Ok(permit) => {
                let (in_flight, _) = self.bulkhead.core.load();
                Ok(AdaptivePermit {
                    permit: Some(permit),
                    limiter: self.clone(),
                    start: self.bulkhead.clock().now(),
                    in_flight,
                })
            }
            Err(e) => Err(LimitReached { limit: e.limit() }),
        }
    }

    fn sample(&self, sample: Sample) {
        self.shared.samples.fetch_add(1, Ordering::Relaxed);
        if sample.dropped {
            self.shared.drops.fetch_add(1, Ordering::Relaxed);
        }
        let Some(mut algorithm) = self.shared.algorithm.try_lock() else {
            self.shared.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let limit = algorithm.update(sample).max(1);
        drop(algorithm);
        let old = self.bulkhead.limit();
        if limit != old {
            self.bulkhead.core.set_limit(limit);
            tracing::debug!(old, new = limit, "adaptive concurrency limit moved");
        }
    }

    /// The clock latencies are measured on.
    pub fn clock(&self) -> &C {
        self.bulkhead.clock()
    }

    /// The limit of the moment.
    pub fn limit(&self) -> u32 {
        self.bulkhead.limit()
    }

    /// Starts over with a new configuration (hot reload): the algorithm restarts
    /// from the new initial limit.
    pub fn reconfigure(&self, config: &AdaptiveConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.shared.config.lock();
        *self.shared.algorithm.lock() = Algorithm::new(config.clone());
        self.bulkhead.core.set_limit(config.initial_limit());
        *current = config.clone();
        tracing::info!(config = ?config, "adaptive concurrency limit reconfigured");
        Ok(())
    }

    /// The counters of the moment.
    pub fn snapshot(&self) -> AdaptiveSnapshot {
        let bulkhead = self.bulkhead.snapshot();
        AdaptiveSnapshot {
            limit: bulkhead.limit,
            in_flight: bulkhead.in_flight,
            rejected: bulkhead.rejected,
            samples: self.shared.samples.load(Ordering::Relaxed),
            drops: self.shared.drops.load(Ordering::Relaxed),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
        }
    }
}

impl<C: Clock> Clone for AdaptiveLimiter<C> {
    fn clone(&self) -> Self {
        AdaptiveLimiter {
            bulkhead: self.bulkhead.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for AdaptiveLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimiter")
            .field("config", &*self.shared.config.lock())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// An adaptive limiter's counters at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdaptiveSnapshot {
    /// The limit of the moment.
    pub limit: u32,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls refused since creation.
    pub rejected: u64,
    /// Calls reported (successes and drops) since creation.
    pub samples: u64,
    /// Of those, drops.
    pub drops: u64,
    /// Reports skipped because another was being applied at that instant.
    pub skipped: u64,
}

/// One call's slot under an [`AdaptiveLimiter`]; report how the call ended.
///
/// Dropping it without a report frees the slot and adds no sample (a cancelled
/// call says nothing about the dependency).
#[must_use = "report how the call ended, or the limit learns nothing from it"]
pub struct AdaptivePermit<C: Clock = DefaultClock> {
    permit: Option<OwnedPermit>,
    limiter: AdaptiveLimiter<C>,
    start: Timestamp,
    in_flight: u32,
}

impl<C: Clock> AdaptivePermit<C> {
    fn finish(mut self, dropped: bool) {
        let rtt = self.limiter.bulkhead.clock().now() - self.start;
        // Free the slot before the algorithm moves the limit.
        drop(self.permit.take());
        self.limiter.sample(Sample {
            rtt,
            in_flight: self.in_flight,
            dropped,
        });
    }

    /// The call succeeded (or failed in a way that says nothing of load).
    pub fn success(self) {
        self.finish(false)
    }

    /// The dependency dropped the call: it refused it as overloaded, or the call
    /// timed out.
    pub fn dropped(self) {
        self.finish(true)
    }

    /// No sample: the call ended in a way that says nothing of the dependency's
    /// capacity (the caller's own error).
    pub fn ignore(mut self) {
        drop(self.permit.take());
    }

    /// Reports by outcome: a transient failure (timeouts, resets, 429, 503) is a
    /// drop; a success or a permanent failure is a latency sample; an ignored
    /// outcome or another strategy's rejection adds no sample.
    pub fn record(self, outcome: &Outcome) {
        match outcome {
            Outcome::Success | Outcome::Permanent => self.success(),
            Outcome::Transient(_) => self.dropped(),
            _ => self.ignore(),
        }
    }

    /// When the call started.
    pub fn start(&self) -> Timestamp {
        self.start
    }
}

impl<C: Clock> fmt::Debug for AdaptivePermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptivePermit")
            .field("start", &self.start)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}
