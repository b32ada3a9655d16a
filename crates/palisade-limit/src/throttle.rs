//! Client-side adaptive throttling, as in the Google SRE book's "Handling Overload":
//! a client that sees its dependency refuse requests starts refusing some of them
//! itself, before they cost the dependency anything.
//!
//! Over a sliding window (two minutes by default) the throttle counts `requests`
//! (every call the application attempted, including those it refused locally) and
//! `accepts` (calls the dependency accepted). A new call is refused locally with
//! probability
//!
//! ```text
//! max(0, (requests − K · accepts) / (requests + 1))
//! ```
//!
//! With `K = 2` the client keeps sending about twice what the dependency accepts:
//! enough to notice quickly when it recovers, while the local refusals cost
//! nothing. While the dependency accepts everything, `requests ≤ K · accepts` and
//! nothing is refused.
//!
//! Two bounds keep the formula honest at its edges: the probability is at most
//! [`max_probability`](ThrottleConfig::max_probability) (0.9 by default), so that
//! some calls always reach a dependency that refuses everything and its recovery is
//! seen; and nothing is refused while the window holds fewer than
//! [`min_requests`](ThrottleConfig::min_requests) requests (10 by default), so that
//! a first failure or two of a quiet client do not shed its next calls.
//!
//! Each call: [`Throttle::check`], then, if it went out, report how the dependency
//! answered with [`Throttle::record_accepted`] / [`record_rejected`](Throttle::record_rejected)
//! or [`record`](Throttle::record). The probability is recomputed from the window at
//! most every [`REFRESH`] (a window snapshot sums its buckets), so a check is a cheap
//! clock reading and, only while refusing, one random draw.
//!
//! # Example
//!
//! ```
//! use palisade_clock::ManualClock;
//! use palisade_limit::throttle::{Throttle, ThrottleConfig};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let throttle = Throttle::with_seed(ThrottleConfig::default(), clock.clone(), 7).unwrap();
//! // The dependency refuses everything: soon the throttle refuses most calls itself
//! // (nine in ten at most, so that a recovery is seen).
//! let mut local = 0;
//! for _ in 0..1000 {
//!     match throttle.check() {
//!         Ok(()) => throttle.record_rejected(),
//!         Err(_) => local += 1,
//!     }
//!     clock.advance(Duration::from_millis(5));
//! }
//! assert!(local > 850 && local < 900);
//! ```

use std::fmt;
use std::time::Duration;

use palisade_classify::{Outcome, OutcomeKind, Rejection, Strategy};
use palisade_clock::{Clock, DefaultClock, Timestamp};
use palisade_window::{TimeConfig, TimeWindow, Window};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_DURATION, check_duration, check_f64, check_range};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// How often, at most, the refusal probability is recomputed from the window: 10 ms,
/// short against any window worth having, long against the cost of a snapshot.
pub const REFRESH: Duration = Duration::from_millis(10);

/// The settings of a [`Throttle`]. In serde form the window is written in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade configuration.
///
/// ```
/// use palisade_limit::throttle::ThrottleConfig;
///
/// let config: ThrottleConfig = toml::from_str("k = 1.5\nwindow = \"1m\"").unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// How many requests per accepted one the client keeps sending; `1..=10`.
    ///
    /// Default 2, the SRE book's: the dependency sees twice what it accepts, which
    /// wastes some of its capacity on refusals but lets the client notice recovery
    /// at once. Lower is more aggressive, higher more lenient.
    pub k: f64,
    /// How far back requests and accepts are counted; `1ms..=1day`.
    ///
    /// Default two minutes, the SRE book's: long enough to smooth bursts, short
    /// enough to forget an overload soon after it ends.
    #[serde(with = "palisade_clock::duration::serde")]
    pub window: Duration,
    /// How many buckets the window moves by; `1..=1000`, with `window / buckets`
    /// at least 1 µs. Default 60 (two seconds each over two minutes).
    pub buckets: usize,
    /// The highest refusal probability; `0..=1`.
    ///
    /// Default 0.9: at most nine calls in ten are refused locally, so a dependency
    /// that refuses everything still sees a tenth of the demand. Only calls that
    /// reach it can show that it has recovered; at 1.0 the formula can approach
    /// shedding everything, and the client then learns of a recovery only as the
    /// window forgets the overload. 0 turns local refusals off.
    pub max_probability: f64,
    /// The fewest requests in the window before anything is refused;
    /// `0..=1_000_000`.
    ///
    /// Default 10: below that, a refusal rate is noise (two failures of a client
    /// that sent three calls are not an overload), and refusing on it would shed
    /// the calls of a quiet client after its first failures.
    pub min_requests: u64,
}

/// The largest [`ThrottleConfig::min_requests`]: a million.
pub const MAX_MIN_REQUESTS: u64 = 1_000_000;

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            k: 2.0,
            window: Duration::from_secs(120),
            buckets: 60,
            max_probability: 0.9,
            min_requests: 10,
        }
    }
}

impl ThrottleConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_f64("k", self.k, 1.0, 10.0)?;
        check_duration(
            "window",
            self.window,
            Duration::from_millis(1),
            MAX_DURATION,
        )?;
        check_range("buckets", self.buckets, 1, 1000)?;
        check_f64("max_probability", self.max_probability, 0.0, 1.0)?;
        check_range("min_requests", self.min_requests, 0, MAX_MIN_REQUESTS)?;
        let width = self.window / self.buckets as u32;
        if width < Duration::from_micros(1) {
            return Err(ConfigError::new(
                "buckets",
                self.buckets,
                format!("1..={} for this window", self.window.as_micros().min(1000)),
            ));
        }
        Ok(())
    }

    fn time_config(&self) -> TimeConfig {
        TimeConfig::new(self.buckets, self.window / self.buckets as u32)
    }
}

/// The throttle refused a call locally.
///
/// It converts into a [`Rejection`] by [`Strategy::Throttle`].
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Throttled {
    probability: f64,
}

impl Throttled {
    /// The refusal probability in effect.
    pub fn probability(&self) -> f64 {
        self.probability
    }

    /// The rejection, for the outcome taxonomy.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::Throttle)
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "throttled locally: the dependency is refusing calls ({:.0} % refused here)",
            self.probability * 100.0
        )
    }
}

impl std::error::Error for Throttled {}

impl From<Throttled> for Rejection {
    fn from(e: Throttled) -> Rejection {
        e.rejection()
    }
}

/// Client-side adaptive throttling; see the [module docs](self).
///
/// Cloning is cheap and clones share the window.
pub struct Throttle<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Clock> {
    window: TimeWindow<C>,
    k: AtomicU64,
    /// The highest refusal probability, as `f64` bits.
    max_probability: AtomicU64,
    min_requests: AtomicU64,
    /// The refusal probability, as `f64` bits.
    probability: AtomicU64,
    /// When it was last recomputed, in nanoseconds on the clock (`u64::MAX`: never).
    refreshed: AtomicU64,
    rng: AtomicU64,
    local: AtomicU64,
    clock: C,
    config: Mutex<ThrottleConfig>,
}

impl Throttle {
    /// A throttle on the default (tokio) clock.
    pub fn new(config: ThrottleConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> Throttle<C> {
    /// A throttle on `clock`, with a random seed for its refusals.
    pub fn with_clock(config: ThrottleConfig, clock: C) -> Result<Self, ConfigError> {
        Self::with_seed(config, clock, rand::random())
    }

    /// A throttle whose refusals follow the seed `seed`: the same calls at the same
    /// times are refused in the same way (for reproducible tests).
    pub fn with_seed(config: ThrottleConfig, clock: C, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let window = window(&config, &clock)?;
        Ok(Throttle {
            inner: Arc::new(Inner {
                window,
                k: AtomicU64::new(config.k.to_bits()),
                max_probability: AtomicU64::new(config.max_probability.to_bits()),
                min_requests: AtomicU64::new(config.min_requests),
                probability: AtomicU64::new(0f64.to_bits()),
                refreshed: AtomicU64::new(u64::MAX),
                rng: AtomicU64::new(seed),
                local: AtomicU64::new(0),
                clock,
                config: Mutex::new(config),
            }),
        })
    }

    /// The refusal probability at `now`, recomputed if older than [`REFRESH`].
    fn probability_at(&self, now: Timestamp, window: &TimeWindow<C>) -> f64 {
        let now = now.as_nanos();
        let refreshed = self.inner.refreshed.load(Ordering::Acquire);
        let stale =
            refreshed == u64::MAX || now.saturating_sub(refreshed) >= REFRESH.as_nanos() as u64;
        if stale
            && self
                .inner
                .refreshed
                .compare_exchange(refreshed, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let p = self.compute(window);
            let old = f64::from_bits(self.inner.probability.swap(p.to_bits(), Ordering::AcqRel));
            if (old == 0.0) != (p == 0.0) {
                if p > 0.0 {
                    tracing::info!(
                        probability = p,
                        "dependency refusing calls: throttling locally"
                    );
                } else {
                    tracing::info!("dependency accepting calls again: throttling stopped");
                }
            }
            return p;
        }
        f64::from_bits(self.inner.probability.load(Ordering::Acquire))
    }

    fn compute(&self, window: &TimeWindow<C>) -> f64 {
        let s = window.snapshot();
        if s.calls() < self.inner.min_requests.load(Ordering::Relaxed) {
            return 0.0;
        }
        let requests = s.calls() as f64;
        let accepts = s.successes() as f64;
        let k = f64::from_bits(self.inner.k.load(Ordering::Relaxed));
        let cap = f64::from_bits(self.inner.max_probability.load(Ordering::Relaxed));
        ((requests - k * accepts) / (requests + 1.0)).clamp(0.0, cap)
    }

    /// A uniform draw in `[0, 1)`: SplitMix64 over a shared counter.
    fn draw(&self) -> f64 {
        let mut z = self
            .inner
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Lets the call go to the dependency, or refuses it locally (which counts as a
    /// request that was not accepted).
    pub fn check(&self) -> Result<(), Throttled> {
        let window = &self.inner.window;
        let now = self.inner.clock.recent();
        let p = self.probability_at(now, window);
        if p > 0.0 && self.draw() < p {
            window.record_at(OutcomeKind::Failure, now);
            self.inner.local.fetch_add(1, Ordering::Relaxed);
            return Err(Throttled { probability: p });
        }
        Ok(())
    }

    /// The dependency accepted the call (whatever its answer meant for the caller).
    pub fn record_accepted(&self) {
        self.inner.window.record(OutcomeKind::Success);
    }

    /// The dependency refused the call as overloaded (429, 503, a timeout).
    pub fn record_rejected(&self) {
        self.inner.window.record(OutcomeKind::Failure);
    }

    /// Reports by outcome: a transient failure is a refusal; a success, a permanent
    /// failure or an ignored outcome means the dependency took the call; another
    /// strategy's rejection never reached it and is not counted.
    pub fn record(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Transient(_) => self.record_rejected(),
            Outcome::Rejected(_) => {}
            _ => self.record_accepted(),
        }
    }

    /// Applies a new `k`, `max_probability` and `min_requests` to the live throttle
    /// (hot reload). The window's length and
    /// buckets are fixed at construction (its memory is laid out for them): a
    /// configuration that changes them is refused, naming the field.
    pub fn reconfigure(&self, config: &ThrottleConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut current = self.inner.config.lock();
        if current.window != config.window {
            return Err(ConfigError::duration(
                "window",
                config.window,
                format!("{:?} (fixed when the throttle was built)", current.window),
            ));
        }
        if current.buckets != config.buckets {
            return Err(ConfigError::new(
                "buckets",
                config.buckets,
                format!("{} (fixed when the throttle was built)", current.buckets),
            ));
        }
        self.inner.k.store(config.k.to_bits(), Ordering::Relaxed);
        self.inner
            .max_probability
            .store(config.max_probability.to_bits(), Ordering::Relaxed);
        self.inner
            .min_requests
            .store(config.min_requests, Ordering::Relaxed);
        self.inner.refreshed.store(u64::MAX, Ordering::Release);
        *current = config.clone();
        Ok(())
    }

    /// The counts of the moment.
    pub fn snapshot(&self) -> ThrottleSnapshot {
        let s = self.inner.window.snapshot();
        ThrottleSnapshot {
            requests: s.calls(),
            accepts: s.successes(),
            probability: self.compute(&self.inner.window),
            local_rejections: self.inner.local.load(Ordering::Relaxed),
        }
    }
}

fn window<C: Clock>(config: &ThrottleConfig, clock: &C) -> Result<TimeWindow<C>, ConfigError> {
    TimeWindow::new(config.time_config(), clock.clone())
        .map_err(|e| ConfigError::duration("window", config.window, e.to_string()))
}

impl<C: Clock> Clone for Throttle<C> {
    fn clone(&self) -> Self {
        Throttle {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Throttle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &*self.inner.config.lock())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// A throttle's counts at one moment.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ThrottleSnapshot {
    /// Requests in the window (including those refused locally).
    pub requests: u64,
    /// Requests the dependency accepted, in the window.
    pub accepts: u64,
    /// The refusal probability these counts give.
    pub probability: f64,
    /// Calls refused locally since creation.
    pub local_rejections: u64,
}
