use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Sample, check_bounds};
use crate::config::{ConfigError, MAX_DURATION, check_duration, check_f64};

/// Additive increase, multiplicative decrease, as Netflix's `AIMDLimit`: a drop (or a
/// call slower than `timeout`) multiplies the limit by `backoff_ratio`; a success
/// while at least half the limit is in use adds one.
///
/// The defaults are Netflix's, chosen there for services of tens to hundreds of
/// concurrent calls. In serde form the timeout is written in the
/// [duration grammar](palisade_clock::duration#the-grammar) of every Palisade configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AimdConfig {
    /// The limit to start from; `min_limit..=max_limit`. Default 20.
    pub initial_limit: u32,
    /// The limit never goes below this; `1..=max_limit`. Default 20: keeps enough
    /// calls going to notice the dependency recovering.
    pub min_limit: u32,
    /// The limit never goes above this; `min_limit..=1_000_000`. Default 200.
    pub max_limit: u32,
    /// What a drop multiplies the limit by; `0.5..=0.99`. Default 0.9: a gentle
    /// back-off, since several drops usually arrive together.
    pub backoff_ratio: f64,
    /// A successful call slower than this counts as a drop; `1ms..=1day`.
    /// Default 5 s.
    #[serde(with = "palisade_clock::duration::serde")]
    pub timeout: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }
}

impl AimdConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.initial_limit, self.min_limit, self.max_limit)?;
        check_f64("backoff_ratio", self.backoff_ratio, 0.5, 0.99)?;
        check_duration(
            "timeout",
            self.timeout,
            Duration::from_millis(1),
            MAX_DURATION,
        )
    }
}

#[derive(Debug)]
pub(crate) struct Aimd {
    config: AimdConfig,
    limit: u32,
}

impl Aimd {
    pub(crate) fn new(config: AimdConfig) -> Self {
        Aimd {
            limit: config.initial_limit,
            config,
        }
    }

    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        let c = &self.config;
        let mut limit = self.limit;
        if sample.dropped || sample.rtt > c.timeout {
            limit = (f64::from(limit) * c.backoff_ratio) as u32;
        } else if u64::from(sample.in_flight) * 2 >= u64::from(limit) {
            limit = limit.saturating_add(1);
        }
        self.limit = limit.clamp(c.min_limit, c.max_limit);
        self.limit
    }
}
