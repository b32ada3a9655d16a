//! Hedging: a second attempt in parallel when the first is slow.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;
use crate::sync::{Arc, AtomicU64, Ordering};

/// The default number of hedges per call: 1. One extra attempt already cuts most of
/// the tail (the fastest of two), and every hedge is extra load on the dependency.
pub const DEFAULT_MAX_HEDGES: u32 = 1;
/// The default delay while a percentile has too few samples: 100 ms, the default
/// first backoff delay, a typical tail for an in-datacentre call.
pub const DEFAULT_HEDGE_FALLBACK: Duration = Duration::from_millis(100);

/// How many recent latencies a percentile is taken from.
const SAMPLES: usize = 128;
/// How many samples a percentile needs before it replaces the fallback delay.
const MIN_SAMPLES: u64 = 32;
/// The percentile is recomputed once per this many samples.
const RECOMPUTE_EVERY: u64 = 16;

/// When to start a hedge.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After a fixed delay.
    Fixed(Duration),
    /// After the given percentile (in `(0, 100]`) of the latencies of recent
    /// successful attempts; `fallback` until enough (32) have been seen.
    Percentile {
        /// The percentile, say `95.0`.
        percentile: f64,
        /// The delay while there are too few samples.
        fallback: Duration,
    },
}

/// Hedging: if an attempt has not completed after a delay, start another in
/// parallel; the first accepted result wins and the others are dropped, which
/// cancels them. Each hedge draws on the retry budget like a retry; at most
/// [`max_hedges`](Hedging::max_hedges) per call.
///
/// - **Accepted results** are successes and ignored outcomes (an answer such as a
///   404 ends the call as it would without hedging). A failure — transient or
///   permanent, or a rejection — does not end the race while other attempts are
///   in flight: a hedge that fails at once must not beat a healthy primary that is
///   about to answer (as in Polly and failsafe-go, which accept only the results
///   their policy does not handle). A panic in an attempt is not caught here; a
///   pipeline that turns panics into permanent failures gets this rule for them.
/// - **When every attempt fails**, the round ends once the last one does, with the
///   first failure that is not transient, if any: a permanent failure would have
///   ended an unhedged call, and hedging does not turn it into a retry. Otherwise
///   it ends with the last transient failure (the freshest retry-after hint), and
///   the executor may retry.
/// - **A zero delay** is parallel mode: all `1 + max_hedges` attempts start at
///   once, whatever becomes of the first. Hedges are counted per call, so a retry
///   after a round that failed runs alone.
/// - **Under an outer retry** (a context marked with
///   [`mark_retrying`](crate::mark_retrying) and the policy's default
///   [`Nested::SingleAttempt`](crate::Nested::SingleAttempt)), a call makes one
///   attempt and starts no hedge: the outer retry already multiplies the load.
///
/// ```
/// use palisade_retry::Hedging;
/// use std::time::Duration;
///
/// let fixed = Hedging::fixed(Duration::from_millis(50)).max_hedges(2).build()?;
/// let p95 = Hedging::percentile(95.0).build()?;
/// assert_eq!(p95.current_delay(), Duration::from_millis(100)); // the fallback, for now
/// # let _ = fixed;
/// # Ok::<(), palisade_retry::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Hedging {
    delay: HedgeDelay,
    max_hedges: u32,
    tracker: Option<Arc<LatencyTracker>>,
}

impl Hedging {
    /// Hedges after `delay`, from zero (parallel mode: every hedge starts with the
    /// first attempt, with a warning when built) to 1 h.
    pub fn fixed(delay: Duration) -> HedgingBuilder {
        HedgingBuilder {
            delay: HedgeDelay::Fixed(delay),
            max_hedges: DEFAULT_MAX_HEDGES,
        }
    }

    /// Hedges after the `percentile` (in `(0, 100]`) latency of recent successful
    /// attempts.
    pub fn percentile(percentile: f64) -> HedgingBuilder {
        HedgingBuilder {
            delay: HedgeDelay::Percentile {
                percentile,
                fallback: DEFAULT_HEDGE_FALLBACK,
            },
            max_hedges: DEFAULT_MAX_HEDGES,
        }
    }

    /// The most hedges one call starts.
    pub fn max_hedges(&self) -> u32 {
        self.max_hedges
    }

    /// The delay configuration.
    pub fn delay(&self) -> HedgeDelay {
        self.delay
    }

    /// Whether this is parallel mode, a fixed delay of zero: every hedge starts
    /// with the first attempt. A percentile delay that measures zero is not: its
    /// hedges start only while the round is undecided.
    pub fn is_parallel(&self) -> bool {
        matches!(self.delay, HedgeDelay::Fixed(d) if d.is_zero())
    }

    /// The delay a hedge would wait now.
    pub fn current_delay(&self) -> Duration {
        match (self.delay, &self.tracker) {
            (HedgeDelay::Fixed(d), _) => d,
            (HedgeDelay::Percentile { fallback, .. }, Some(t)) => t.current().unwrap_or(fallback),
            (HedgeDelay::Percentile { fallback, .. }, None) => fallback,
        }
    }

    /// Records the latency of a successful attempt, for a percentile delay.
    #[inline]
    pub(crate) fn record(&self, latency: Duration) {
        if let Some(t) = &self.tracker {
            t.record(latency);
        }
    }

    pub(crate) fn tracks_latency(&self) -> bool {
        self.tracker.is_some()
    }
}

impl fmt::Debug for Hedging {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedging")
            .field("delay", &self.delay)
            .field("max_hedges", &self.max_hedges)
            .field("current_delay", &self.current_delay())
            .finish()
    }
}

/// Builds [`Hedging`]; [`build`](HedgingBuilder::build) validates.
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct HedgingBuilder {
    delay: HedgeDelay,
    max_hedges: u32,
}

impl HedgingBuilder {
    /// The most hedges per call: from 1 to 10 (default [`DEFAULT_MAX_HEDGES`]).
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.max_hedges = n;
        self
    }

    /// The delay of a percentile hedge until enough latencies are known (default
    /// [`DEFAULT_HEDGE_FALLBACK`]); at most 1 h.
    pub fn fallback(mut self, delay: Duration) -> Self {
        if let HedgeDelay::Percentile { fallback, .. } = &mut self.delay {
            *fallback = delay;
        }
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`]: `hedging.max_hedges` outside 1..=10, a delay above 1 h,
    /// a percentile outside `(0, 100]`.
    pub fn build(self) -> Result<Hedging, ConfigError> {
        const HOUR: Duration = Duration::from_secs(3600);
        if !(1..=10).contains(&self.max_hedges) {
            return Err(ConfigError::new(
                "hedging.max_hedges",
                self.max_hedges,
                "from 1 to 10",
            ));
        }
        let tracker = match self.delay {
            HedgeDelay::Fixed(d) => {
                if d > HOUR {
                    return Err(ConfigError::duration("hedging.delay", d, "at most 1h"));
                }
                if d.is_zero() {
                    tracing::warn!(
                        max_hedges = self.max_hedges,
                        "hedging: a zero delay is parallel mode; every call starts all its attempts at once"
                    );
                }
                None
            }
            HedgeDelay::Percentile {
                percentile,
                fallback,
            } => {
                if !(percentile > 0.0 && percentile <= 100.0) {
                    return Err(ConfigError::new(
                        "hedging.percentile",
                        percentile,
                        "within (0, 100]",
                    ));
                }
                if fallback > HOUR {
                    return Err(ConfigError::duration(
                        "hedging.fallback",
                        fallback,
                        "at most 1h",
                    ));
                }
                Some(Arc::new(LatencyTracker::new(percentile)))
            }
        };
        Ok(Hedging {
            delay: self.delay,
            max_hedges: self.max_hedges,
            tracker,
        })
    }
}

/// Hedging as configuration (serde): either `delay` or `percentile`. Durations are
/// written in the [duration grammar](palisade_clock::duration#the-grammar) of every
/// Palisade configuration.
///
/// ```
/// use palisade_retry::HedgingConfig;
///
/// let c: HedgingConfig = toml::from_str("percentile = 99.0\nmax_hedges = 2")?;
/// assert_eq!(c.build()?.max_hedges(), 2);
/// let bad: HedgingConfig = toml::from_str("delay = \"10ms\"\npercentile = 99.0")?;
/// assert_eq!(bad.build().unwrap_err().field(), "hedging");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HedgingConfig {
    /// A fixed delay, at most 1 h; `"0s"` is parallel mode (see [`Hedging`]).
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub delay: Option<Duration>,
    /// A latency percentile in `(0, 100]`.
    pub percentile: Option<f64>,
    /// The delay of a percentile hedge until enough latencies are known.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub fallback: Option<Duration>,
    /// The most hedges per call.
    pub max_hedges: Option<u32>,
}

impl HedgingConfig {
    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// Both or neither of `delay` and `percentile`; a `fallback` with a fixed
    /// delay; see [`HedgingBuilder::build`].
    pub fn build(&self) -> Result<Hedging, ConfigError> {
        let mut builder = match (self.delay, self.percentile) {
            (Some(d), None) => {
                if let Some(f) = self.fallback {
                    return Err(ConfigError::duration(
                        "hedging.fallback",
                        f,
                        "only with a percentile delay",
                    ));
                }
                Hedging::fixed(d)
            }
            (None, Some(p)) => {
                let mut b = Hedging::percentile(p);
                if let Some(f) = self.fallback {
                    b = b.fallback(f);
                }
                b
            }
            _ => {
                return Err(ConfigError::new(
                    "hedging",
                    (self.delay, self.percentile),
                    "exactly one of `delay` and `percentile`",
                ));
            }
        };
        if let Some(n) = self.max_hedges {
            builder = builder.max_hedges(n);
        }
        builder.build()
    }
}

/// Recent latencies of successful attempts, lock-free: a ring of atomics written
/// round-robin; every few samples the writer recomputes the percentile and caches it.
struct LatencyTracker {
    percentile: f64,
    next: AtomicU64,
    ring: Box<[AtomicU64]>,
    /// The cached percentile in nanoseconds, plus one; zero while unknown.
    cached: AtomicU64,
}

impl LatencyTracker {
    fn new(percentile: f64) -> Self {
        LatencyTracker {
            percentile,
            next: AtomicU64::new(0),
            ring: (0..SAMPLES).map(|_| AtomicU64::new(0)).collect(),
            cached: AtomicU64::new(0),
        }
    }

    fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX - 1);
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.ring[(i % SAMPLES as u64) as usize].store(nanos.saturating_add(1), Ordering::Relaxed);
        let seen = i + 1;
        if seen >= MIN_SAMPLES && seen % RECOMPUTE_EVERY == 0 {
            self.recompute();
        }
    }

    fn recompute(&self) {
        let mut values = [0u64; SAMPLES];
        let mut n = 0;
        for slot in self.ring.iter() {
            let v = slot.load(Ordering::Relaxed);
            if v != 0 {
                values[n] = v - 1;
                n += 1;
            }
        }
        if n == 0 {
            return;
        }
        let values = &mut values[..n];
        let rank = ((self.percentile / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
        let (_, p, _) = values.select_nth_unstable(rank);
        self.cached.store(p.saturating_add(1), Ordering::Relaxed);
    }

    fn current(&self) -> Option<Duration> {
        match self.cached.load(Ordering::Relaxed) {
            0 => None,
            v => Some(Duration::from_nanos(v - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_follows_recent_latencies() {
        let h = Hedging::percentile(90.0)
            .fallback(Duration::from_millis(7))
            .build()
            .unwrap();
        assert!(h.tracks_latency());
        for ms in 1..=31 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(
            h.current_delay(),
            Duration::from_millis(7),
            "too few samples"
        );
        h.record(Duration::from_millis(32));
        // p90 of 1..=32 ms: the 29th value.
        assert_eq!(h.current_delay(), Duration::from_millis(29));
        for _ in 0..SAMPLES {
            h.record(Duration::from_millis(500));
        }
        assert_eq!(h.current_delay(), Duration::from_millis(500));
    }

    #[test]
    fn validation() {
        let field = |b: HedgingBuilder| b.build().unwrap_err().field().to_owned();
        assert_eq!(
            field(Hedging::fixed(Duration::ZERO).max_hedges(0)),
            "hedging.max_hedges"
        );
        assert_eq!(
            field(Hedging::fixed(Duration::ZERO).max_hedges(11)),
            "hedging.max_hedges"
        );
        assert_eq!(
            field(Hedging::fixed(Duration::from_secs(7200))),
            "hedging.delay"
        );
        assert_eq!(field(Hedging::percentile(0.0)), "hedging.percentile");
        assert_eq!(field(Hedging::percentile(f64::NAN)), "hedging.percentile");
        assert_eq!(field(Hedging::percentile(101.0)), "hedging.percentile");
        assert_eq!(
            field(Hedging::percentile(50.0).fallback(Duration::from_secs(7200))),
            "hedging.fallback"
        );
        let c = HedgingConfig {
            delay: Some(Duration::from_millis(1)),
            fallback: Some(Duration::from_millis(1)),
            ..HedgingConfig::default()
        };
        assert_eq!(c.build().unwrap_err().field(), "hedging.fallback");
        assert_eq!(
            HedgingConfig::default().build().unwrap_err().field(),
            "hedging"
        );
    }
}
