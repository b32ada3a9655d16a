//! The outlier detector's configuration: defaults, serde, validation.

use std::time::Duration;

use palisade_clock::ConfigError;
use palisade_window::TimeConfig;
use serde::Deserialize;

/// When an endpoint is an outlier, for how long it is ejected, and how many may be
/// ejected at once.
///
/// Every field is optional in a configuration file and takes its default; the
/// durations use the [duration grammar](palisade_clock::duration#the-grammar) of
/// every Palisade configuration. [`validate`](Self::validate) runs when a detector
/// is built.
///
/// # Defaults, with their reasons
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | a replica that is down fails every call; five in a row is no accident at any traffic (Envoy's default) |
/// | [`failure_rate`](Self::failure_rate) | 50 % | one replica failing half of its calls while the rest are fine is broken, not unlucky |
/// | [`minimum_calls`](Self::minimum_calls) | 20 | the rate and latency rules need evidence; the breaker's default |
/// | [`latency_factor`](Self::latency_factor) | 5 × | an endpoint whose median latency is five times the median of the others' slows every call that lands on it |
/// | [`window`](Self::window) | 10 × 1 s | what the breaker counts over: recent enough to see a replica go bad within seconds |
/// | [`interval`](Self::interval) | 1 s | how often the rate and latency rules are judged: on a call, never by a task of its own |
/// | [`base_ejection`](Self::base_ejection) | 30 s | long enough for a restarting replica to come back (Envoy's default) |
/// | [`max_ejection`](Self::max_ejection) | 5 min | a replica that keeps failing is retried at least this often |
/// | [`max_ejected_percent`](Self::max_ejected_percent) | 50 % | a dependency-wide outage must not eject everything: that is the breaker's job |
/// | [`probation_successes`](Self::probation_successes) | 5 | a readmitted endpoint must prove itself before its ejection count is forgiven |
///
/// ```
/// use palisade_endpoint::OutlierConfig;
/// use std::time::Duration;
///
/// let config: OutlierConfig = serde_json::from_str(r#"{
///     "consecutive_failures": 3,
///     "base_ejection": "10s",
///     "max_ejected_percent": 20
/// }"#).unwrap();
/// assert_eq!(config.base_ejection, Duration::from_secs(10));
/// assert!(config.validate().is_ok());
///
/// let bad = OutlierConfig::default().with_max_ejected_percent(150.0);
/// assert_eq!(bad.validate().unwrap_err().field(), "max_ejected_percent");
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Ejects an endpoint after this many failures in a row (`None`: off), 1 to
    /// 1 000 000.
    pub consecutive_failures: Option<u32>,
    /// Ejects an endpoint whose failure rate over the window reaches this percent
    /// (`None`: off), above 0 and at most 100.
    pub failure_rate: Option<f64>,
    /// Calls in the window before the rate and latency rules judge an endpoint, at
    /// least 1.
    pub minimum_calls: u64,
    /// Ejects an endpoint whose median latency exceeds this multiple of the median
    /// of the other endpoints' medians (`None`: off), more than 1. Judged when at
    /// least three endpoints have `minimum_calls` timed calls.
    pub latency_factor: Option<f64>,
    /// The window each endpoint's calls are counted over.
    pub window: TimeConfig,
    /// How often the rate and latency rules are judged, from 1 ms to 1 h.
    #[serde(with = "palisade_clock::duration::serde")]
    pub interval: Duration,
    /// The first ejection's length; the n-th ejection in a row lasts n × this,
    /// from 1 ms to 1 day.
    #[serde(with = "palisade_clock::duration::serde")]
    pub base_ejection: Duration,
    /// The longest ejection, at least `base_ejection` and at most 1 day.
    #[serde(with = "palisade_clock::duration::serde")]
    pub max_ejection: Duration,
    /// At most this percent of the endpoints are ejected at once, from 0 to 100
    /// (rounded down, but at least one of two or more endpoints when above 0, and
    /// never all of them).
    pub max_ejected_percent: f64,
    /// Successes in a row a readmitted endpoint needs to leave probation, 1 to
    /// 1 000 000; one failure on probation ejects it again, for longer.
    pub probation_successes: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: Some(5),
            failure_rate: Some(50.0),
            minimum_calls: 20,
            latency_factor: Some(5.0),
            window: TimeConfig::default(),
            interval: Duration::from_secs(1),
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50.0,
            probation_successes: 5,
        }
    }
}

const DAY: Duration = Duration::from_secs(86_400);

impl OutlierConfig {
    /// The same configuration with `consecutive_failures`.
    #[must_use]
    pub fn with_consecutive_failures(mut self, n: Option<u32>) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// The same configuration with `failure_rate` (percent).
    #[must_use]
    pub fn with_failure_rate(mut self, percent: Option<f64>) -> Self {
        self.failure_rate = percent;
        self
    }

    /// The same configuration with `minimum_calls`.
    #[must_use]
    pub fn with_minimum_calls(mut self, n: u64) -> Self {
        self.minimum_calls = n;
        self
    }

    /// The same configuration with `latency_factor`.
    #[must_use]
    pub fn with_latency_factor(mut self, factor: Option<f64>) -> Self {
        self.latency_factor = factor;
        self
    }

    /// The same configuration with `window`.
    #[must_use]
    pub fn with_window(mut self, window: TimeConfig) -> Self {
        self.window = window;
        self
    }

    /// The same configuration with `interval`.
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The same configuration with `base_ejection` and `max_ejection`.
    #[must_use]
    pub fn with_ejection(mut self, base: Duration, max: Duration) -> Self {
        self.base_ejection = base;
        self.max_ejection = max;
        self
    }

    /// The same configuration with `max_ejected_percent`.
    #[must_use]
    pub fn with_max_ejected_percent(mut self, percent: f64) -> Self {
        self.max_ejected_percent = percent;
        self
    }

    /// The same configuration with `probation_successes`.
    #[must_use]
    pub fn with_probation_successes(mut self, n: u32) -> Self {
        self.probation_successes = n;
        self
    }

    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.consecutive_failures {
            if !(1..=1_000_000).contains(&n) {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    n,
                    "from 1 to 1000000",
                ));
            }
        }
        if let Some(p) = self.failure_rate {
            if !(p > 0.0 && p <= 100.0) {
                return Err(ConfigError::new(
                    "failure_rate",
                    p,
                    "above 0 and at most 100",
                ));
            }
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new("minimum_calls", 0, "at least 1"));
        }
        if let Some(f) = self.latency_factor {
            if !(f > 1.0 && f.is_finite()) {
                return Err(ConfigError::new(
                    "latency_factor",
                    f,
                    "a finite number above 1",
                ));
            }
        }
        self.window.validate().map_err(|e| e.within("window"))?;
        if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&self.interval) {
            return Err(ConfigError::duration(
                "interval",
                self.interval,
                "from 1ms to 1h",
            ));
        }
        if !(Duration::from_millis(1)..=DAY).contains(&self.base_ejection) {
            return Err(ConfigError::duration(
                "base_ejection",
                self.base_ejection,
                "from 1ms to 24h",
            ));
        }
        if !(self.base_ejection..=DAY).contains(&self.max_ejection) {
            return Err(ConfigError::duration(
                "max_ejection",
                self.max_ejection,
                "from base_ejection to 24h",
            ));
        }
        if !(0.0..=100.0).contains(&self.max_ejected_percent) {
            return Err(ConfigError::new(
                "max_ejected_percent",
                self.max_ejected_percent,
                "from 0 to 100",
            ));
        }
        if !(1..=1_000_000).contains(&self.probation_successes) {
            return Err(ConfigError::new(
                "probation_successes",
                self.probation_successes,
                "from 1 to 1000000",
            ));
        }
        Ok(())
    }

    /// How many of `n` endpoints may be ejected at once.
    pub fn max_ejected(&self, n: usize) -> usize {
        if n < 2 || self.max_ejected_percent <= 0.0 {
            return 0;
        }
        let share = (n as f64 * self.max_ejected_percent / 100.0).floor() as usize;
        share.clamp(1, n - 1)
    }

    /// The length of the `ejections`-th ejection in a row: `base × ejections`,
    /// capped at `max_ejection`.
    pub fn ejection_for(&self, ejections: u32) -> Duration {
        self.base_ejection
            .saturating_mul(ejections.max(1))
            .min(self.max_ejection)
    }
}
