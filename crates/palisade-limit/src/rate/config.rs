use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, MAX_DURATION, check_duration, check_range};

/// The most calls per period a rate limiter accepts, and the largest burst: a
/// billion.
pub const MAX_RATE: u32 = 1_000_000_000;

/// How fast a [`RateLimiter`](crate::RateLimiter) lets calls through: `rate` calls
/// per `period`, of which up to `burst` may come at once after a quiet spell. In
/// serde form the period is written in the [duration grammar](palisade_clock::duration#the-grammar) of
/// every Palisade configuration.
///
/// ```
/// use palisade_limit::RateLimiterConfig;
/// use std::time::Duration;
///
/// let config: RateLimiterConfig =
///     toml::from_str("rate = 50\nperiod = \"1s\"\nburst = 10").unwrap();
/// assert!(config.validate().is_ok());
/// assert_eq!(config.emission_interval(), Duration::from_millis(20));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimiterConfig {
    /// Calls per `period`; `1..=1_000_000_000`, and at most one per nanosecond.
    ///
    /// Default 100: a rate limit protects a particular dependency, so there is no
    /// right number for all of them; 100 a second is a conservative start that
    /// makes the limiter visible in tests rather than silently absent.
    pub rate: u32,
    /// The period `rate` is counted over; `1us..=1day`. Default one second, the unit
    /// quotas are usually given in.
    #[serde(with = "palisade_clock::duration::serde")]
    pub period: Duration,
    /// How many calls may pass at once after a quiet spell; `1..=1_000_000_000`.
    ///
    /// Default (`None`): equal to `rate`, so a whole period's quota may arrive at
    /// once, as most quota-based limiters behave.
    pub burst: Option<u32>,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            rate: 100,
            period: Duration::from_secs(1),
            burst: None,
        }
    }
}

impl RateLimiterConfig {
    /// `rate` calls per `period`, with a burst of `rate`.
    pub fn new(rate: u32, period: Duration) -> Self {
        RateLimiterConfig {
            rate,
            period,
            burst: None,
        }
    }

    /// `rate` calls per second, with a burst of `rate`.
    pub fn per_second(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(1))
    }

    /// With a burst of `burst` calls.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The burst in effect: `burst`, or `rate` when it is not given.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// The time between two calls at the steady rate: `period / rate` (rounded
    /// down to whole nanoseconds).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_nanos())
    }

    pub(crate) fn emission_nanos(&self) -> u64 {
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        period / u64::from(self.rate.max(1))
    }

    /// How long the burst takes at the steady rate: `burst × interval`.
    pub(crate) fn burst_nanos(&self) -> u128 {
        u128::from(self.emission_nanos()) * u128::from(self.effective_burst())
    }

    /// The GCRA tolerance: how far ahead of now the theoretical arrival time may run,
    /// `(burst - 1) * emission_interval`.
    pub(crate) fn tolerance_nanos(&self) -> u64 {
        self.emission_nanos()
            .saturating_mul(u64::from(self.effective_burst().saturating_sub(1)))
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_duration(
            "period",
            self.period,
            Duration::from_micros(1),
            MAX_DURATION,
        )?;
        let period_nanos = self.period.as_nanos() as u64;
        let max_rate = period_nanos.min(u64::from(MAX_RATE)) as u32;
        check_range("rate", self.rate, 1, max_rate)?;
        check_range("burst", self.effective_burst(), 1, MAX_RATE)?;
        // Keep the theoretical arrival time far from overflowing a u64.
        let span = u128::from(self.emission_nanos()) * u128::from(self.effective_burst());
        if span > u128::from(u64::MAX / 4) {
            return Err(ConfigError::new(
                "burst",
                self.effective_burst(),
                format!(
                    "1..={} at this rate (burst × period / rate must stay under 146 years)",
                    u64::MAX / 4 / self.emission_nanos()
                ),
            ));
        }
        Ok(())
    }
}
