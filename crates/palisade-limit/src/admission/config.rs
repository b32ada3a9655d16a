use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::adaptive::{AdaptiveConfig, AimdConfig};
use crate::config::{ConfigError, MAX_DURATION, check_duration, check_f64, check_range};

/// The settings of an [`Admission`](super::Admission) controller.
///
/// In serde form durations are written in the
/// [duration grammar](palisade_clock::duration#the-grammar) and the limit is an
/// [`AdaptiveConfig`] table named by its `algorithm`:
///
/// ```
/// use palisade_limit::admission::AdmissionConfig;
///
/// let config: AdmissionConfig = toml::from_str(r#"
///     critical_share = 0.6
///     default_share = 0.3
///     max_wait = "200ms"
///     [limit]
///     algorithm = "vegas"
///     max_limit = 500
/// "#).unwrap();
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// The concurrency limit and how it moves. Default: Gradient2 with its
    /// defaults (it backs off as soon as latency grows, before anything fails).
    pub limit: AdaptiveConfig,
    /// The part of the limit guaranteed to critical requests when the whole limit
    /// is in use; `0..=1`. Default 0.5: critical traffic is usually a small part
    /// of the whole, and half the capacity is far more than it needs.
    pub critical_share: f64,
    /// The part guaranteed to default requests; `0..=1`. Default 0.4.
    pub default_share: f64,
    /// The part guaranteed to sheddable requests; `0..=1`. Default 0.1: batch
    /// work keeps going, slowly, under overload. The three shares add up to at
    /// most 1.
    pub sheddable_share: f64,
    /// Requests waiting for a slot at most; `0..=1_000_000`. Default 100. With 0
    /// nothing waits: a request finding the limit in use is refused at once.
    pub max_queue: u32,
    /// The longest a request waits for a slot; `0s..=1day`. Default 1 s. A request
    /// with a deadline waits at most until the deadline minus the typical service
    /// time, if that is sooner.
    #[serde(with = "palisade_clock::duration::serde")]
    pub max_wait: Duration,
    /// CoDel's target: the standing queue delay tolerated; `1us..=interval`.
    /// Default 5 ms (CoDel's and Facebook's). While overloaded a request waits at
    /// most this long.
    #[serde(with = "palisade_clock::duration::serde")]
    pub target: Duration,
    /// CoDel's interval: how long every request must have waited longer than the
    /// target before the queue counts as overloaded; `1us..=1day`. Default 100 ms.
    #[serde(with = "palisade_clock::duration::serde")]
    pub interval: Duration,
    /// Refuse at once a request whose remaining deadline is shorter than the
    /// typical service time (the average latency of the calls reported). Default
    /// true: the work would be wasted, the caller gives up before the answer.
    pub refuse_unmeetable: bool,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            limit: AdaptiveConfig::default(),
            critical_share: 0.5,
            default_share: 0.4,
            sheddable_share: 0.1,
            max_queue: 100,
            max_wait: Duration::from_secs(1),
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
            refuse_unmeetable: true,
        }
    }
}

impl AdmissionConfig {
    /// The defaults with a fixed limit of `limit` concurrent requests (an AIMD
    /// limit pinned at `limit`).
    pub fn fixed(limit: u32) -> Self {
        let aimd = AimdConfig {
            initial_limit: limit,
            min_limit: limit,
            max_limit: limit,
            ..AimdConfig::default()
        };
        AdmissionConfig {
            limit: AdaptiveConfig::Aimd(aimd),
            ..AdmissionConfig::default()
        }
    }

    /// With this limit algorithm.
    pub fn with_limit(mut self, limit: AdaptiveConfig) -> Self {
        self.limit = limit;
        self
    }

    /// With these guaranteed shares (critical, default, sheddable).
    pub fn with_shares(mut self, critical: f64, default: f64, sheddable: f64) -> Self {
        self.critical_share = critical;
        self.default_share = default;
        self.sheddable_share = sheddable;
        self
    }

    /// With a queue of `max_queue` requests waiting at most `max_wait`.
    pub fn with_queue(mut self, max_queue: u32, max_wait: Duration) -> Self {
        self.max_queue = max_queue;
        self.max_wait = max_wait;
        self
    }

    /// With CoDel's target and interval.
    pub fn with_codel(mut self, target: Duration, interval: Duration) -> Self {
        self.target = target;
        self.interval = interval;
        self
    }

    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limit.validate().map_err(|e| e.within("limit"))?;
        check_f64("critical_share", self.critical_share, 0.0, 1.0)?;
        check_f64("default_share", self.default_share, 0.0, 1.0)?;
        check_f64("sheddable_share", self.sheddable_share, 0.0, 1.0)?;
        let sum = self.critical_share + self.default_share + self.sheddable_share;
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::shown(
                "critical_share + default_share + sheddable_share",
                format!("{sum}"),
                "at most 1 (100 %)",
            ));
        }
        check_range("max_queue", self.max_queue, 0, 1_000_000)?;
        check_duration("max_wait", self.max_wait, Duration::ZERO, MAX_DURATION)?;
        check_duration(
            "interval",
            self.interval,
            Duration::from_micros(1),
            MAX_DURATION,
        )?;
        check_duration(
            "target",
            self.target,
            Duration::from_micros(1),
            self.interval,
        )
    }

    pub(crate) fn shares(&self) -> [f64; 3] {
        [
            self.critical_share,
            self.default_share,
            self.sheddable_share,
        ]
    }
}
