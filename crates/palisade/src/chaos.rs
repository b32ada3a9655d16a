//! Chaos strategies for rehearsals: inject latency, errors or replaced outcomes
//! into a pipeline's attempts at a set rate, behind a switch that changes at run
//! time.
//!
//! A [`Chaos`] sits innermost in a pipeline, just around the call, so everything
//! outside reacts to what it injects as it would to the real thing: injected
//! latency runs inside the attempt timeout, injected failures are retried and
//! counted by the breaker.
//!
//! | injection | what the attempt sees |
//! | --- | --- |
//! | latency | the call starts after a delay (on the pipeline's clock) |
//! | error | the call is not made; the attempt fails with [`Error::is_injected`](crate::Error::is_injected), transient by default |
//! | replaced outcome | the call is made, and the strategies see the given outcome instead of the classifier's |
//!
//! It starts **disabled**: chaos is switched on deliberately, for a rehearsal, and
//! off again by the same switch ([`Chaos::set_enabled`]). While disabled it costs
//! one atomic load per attempt.
//!
//! ```
//! use palisade::chaos::Chaos;
//! use palisade::{Context, Pipeline};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let chaos = Chaos::builder().error_rate(1.0).build()?;
//! let pipeline = Pipeline::builder("users-api").chaos(chaos.clone()).build()?;
//! let ctx = Context::background();
//! let call = |_ctx| async { Ok::<_, std::io::Error>(7) };
//!
//! assert_eq!(pipeline.execute(&ctx, call).await?, 7); // disabled: no effect
//! chaos.set_enabled(true);
//! assert!(pipeline.execute(&ctx, call).await.unwrap_err().is_injected());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use palisade_classify::Outcome;

use crate::ConfigError;

/// Rates are kept in parts per million: exact for the rates anyone configures.
const PPM: u64 = 1_000_000;

/// Injects latency, errors and replaced outcomes into attempts; made by
/// [`Chaos::builder`]. Clones share the switch and the counters.
#[derive(Clone)]
pub struct Chaos {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: AtomicBool,
    latency_ppm: u64,
    latency: Duration,
    error_ppm: u64,
    error_outcome: Outcome,
    replace_ppm: u64,
    replacement: Outcome,
    rng: AtomicU64,
    delayed: AtomicU64,
    failed: AtomicU64,
    replaced: AtomicU64,
}

/// What chaos does to one attempt.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) delay: Option<Duration>,
    pub(crate) fail: Option<Outcome>,
    pub(crate) replace: Option<Outcome>,
}

/// How many injections a [`Chaos`] made.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosSnapshot {
    /// Whether injection is on.
    pub enabled: bool,
    /// Attempts delayed.
    pub delayed: u64,
    /// Attempts failed without calling.
    pub failed: u64,
    /// Attempts whose outcome was replaced.
    pub replaced: u64,
}

/// Builds a [`Chaos`].
#[derive(Clone, Debug)]
pub struct ChaosBuilder {
    latency_rate: f64,
    latency: Duration,
    error_rate: f64,
    error_outcome: Outcome,
    replace_rate: f64,
    replacement: Outcome,
    seed: u64,
    enabled: bool,
}

impl Chaos {
    /// A builder that injects nothing, starts disabled, and is seeded with a fixed
    /// seed (rehearsals are reproducible; change it with
    /// [`seed`](ChaosBuilder::seed)).
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder {
            latency_rate: 0.0,
            latency: Duration::ZERO,
            error_rate: 0.0,
            error_outcome: Outcome::transient(),
            replace_rate: 0.0,
            replacement: Outcome::transient(),
            seed: 0x9E37_79B9_7F4A_7C15,
            enabled: false,
        }
    }

    /// Turns injection on or off, at once, for every pipeline sharing this chaos.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.enabled.store(enabled, Ordering::Release);
        tracing::warn!(enabled, "chaos injection switched");
    }

    /// Whether injection is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled.load(Ordering::Acquire)
    }

    /// The counters now.
    pub fn snapshot(&self) -> ChaosSnapshot {
        ChaosSnapshot {
            enabled: self.is_enabled(),
            delayed: self.inner.delayed.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            replaced: self.inner.replaced.load(Ordering::Relaxed),
        }
    }

    /// Draws what to do to one attempt.
    #[inline]
    pub(crate) fn plan(&self) -> Plan {
        if !self.inner.enabled.load(Ordering::Relaxed) {
            return Plan::default();
        }
        self.draw()
    }

    #[cold]
    fn draw(&self) -> Plan {
        let i = &self.inner;
        let mut plan = Plan::default();
        if i.latency_ppm > 0 && self.roll() < i.latency_ppm {
            i.delayed.fetch_add(1, Ordering::Relaxed);
            plan.delay = Some(i.latency);
        }
        if i.error_ppm > 0 && self.roll() < i.error_ppm {
            i.failed.fetch_add(1, Ordering::Relaxed);
            plan.fail = Some(i.error_outcome);
        } else if i.replace_ppm > 0 && self.roll() < i.replace_ppm {
            i.replaced.fetch_add(1, Ordering::Relaxed);
            plan.replace = Some(i.replacement);
        }
        if plan != Plan::default() {
            tracing::debug!(?plan, "chaos injected");
        }
        plan
    }

    /// A number in `0..PPM`, from a shared xorshift generator.
    fn roll(&self) -> u64 {
        let mut x = 0;
        let _ = self
            .inner
            .rng
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mut s| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                x = s;
                Some(s)
            });
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % PPM
    }
}

impl fmt::Debug for Chaos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Chaos")
            .field("enabled", &self.is_enabled())
            .field("latency_ppm", &i.latency_ppm)
            .field("latency", &i.latency)
            .field("error_ppm", &i.error_ppm)
            .field("replace_ppm", &i.replace_ppm)
            .finish()
    }
}

fn rate(field: &str, r: f64) -> Result<u64, ConfigError> {
    if !(0.0..=1.0).contains(&r) {
        return Err(ConfigError::new(
            field.to_owned(),
            r,
            "a fraction in 0.0..=1.0",
        ));
    }
    Ok((r * PPM as f64).round() as u64)
}

impl ChaosBuilder {
    /// Delays the fraction `rate` (0.0..=1.0) of attempts by `delay`.
    pub fn latency(mut self, rate: f64, delay: Duration) -> Self {
        self.latency_rate = rate;
        self.latency = delay;
        self
    }

    /// Fails the fraction `rate` of attempts without calling, as a transient
    /// failure.
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// The outcome injected errors stand for (default transient).
    pub fn error_outcome(mut self, outcome: Outcome) -> Self {
        self.error_outcome = outcome;
        self
    }

    /// Replaces the outcome of the fraction `rate` of attempts with `outcome`
    /// (the call is made; the strategies see `outcome`).
    pub fn replace_outcome(mut self, rate: f64, outcome: Outcome) -> Self {
        self.replace_rate = rate;
        self.replacement = outcome;
        self
    }

    /// Seeds the draws, for a reproducible rehearsal.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Starts enabled (default disabled).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The chaos, or the first rate out of range (or a delay over a day).
    pub fn build(self) -> Result<Chaos, ConfigError> {
        let latency_ppm = rate("chaos.latency.rate", self.latency_rate)?;
        let error_ppm = rate("chaos.error_rate", self.error_rate)?;
        let replace_ppm = rate("chaos.replace.rate", self.replace_rate)?;
        if self.latency > crate::MAX_TIMEOUT {
            return Err(ConfigError::duration(
                "chaos.latency.delay",
                self.latency,
                "at most 24h",
            ));
        }
        Ok(Chaos {
            inner: Arc::new(Inner {
                enabled: AtomicBool::new(self.enabled),
                latency_ppm,
                latency: self.latency,
                error_ppm,
                error_outcome: self.error_outcome,
                replace_ppm,
                replacement: self.replacement,
                // xorshift must not start at zero.
                rng: AtomicU64::new(self.seed | 1),
                delayed: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                replaced: AtomicU64::new(0),
            }),
        })
    }
}
