use serde::{Deserialize, Serialize};

use super::{Sample, check_bounds};
use crate::config::{ConfigError, check_f64, check_range};

/// Vegas, as Netflix's `VegasLimit` (after TCP Vegas): the limit follows an
/// estimate of how many calls are queueing at the dependency, measured against the
/// lowest latency seen.
///
/// On each sample: `queue = ceil(limit × (1 − rtt_noload / rtt))`, where
/// `rtt_noload` is the lowest latency seen; with `l = log10(limit)`, the limit grows
/// by `beta × l` while `queue ≤ l` (nothing queues: probe fast), by `l` while
/// `queue < alpha × l`, shrinks by `l` once `queue > beta × l`, and holds in
/// between; a dropped call shrinks it by `l`. The new value enters the limit with
/// weight `smoothing`, within `min_limit..=max_limit`. While fewer than half the
/// limit are in flight the limit does not move (the caller is the bottleneck).
///
/// `rtt_noload` is measured afresh every `probe_multiplier × limit` samples (the
/// next sample becomes the new minimum), so a dependency that became slower for
/// good is not compared forever with its old best. Netflix's probe adds a random
/// jitter to that count; here it is exact, so a run is reproducible.
///
/// The defaults are Netflix's (alpha 3, beta 6, smoothing 1, probe multiplier 30)
/// except the bounds, which are those of the other algorithms of this crate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct VegasConfig {
    /// The limit to start from; `min_limit..=max_limit`. Default 20.
    pub initial_limit: u32,
    /// The limit never goes below this; `1..=max_limit`. Default 20: keeps enough
    /// calls going to notice the dependency recovering.
    pub min_limit: u32,
    /// The limit never goes above this; `min_limit..=1_000_000`. Default 200.
    pub max_limit: u32,
    /// Below `alpha × log10(limit)` queued calls the limit grows; `0..=100`.
    /// Default 3.
    pub alpha: f64,
    /// Above `beta × log10(limit)` queued calls the limit shrinks; `alpha..=100`.
    /// Default 6: between alpha and beta the limit holds, so it does not oscillate.
    pub beta: f64,
    /// How much of each new value enters the limit; `0.01..=1`. Default 1 (no
    /// smoothing: Vegas's steps are already small, logarithmic in the limit).
    pub smoothing: f64,
    /// The lowest latency is measured afresh every `probe_multiplier × limit`
    /// samples; `1..=100_000`. Default 30.
    pub probe_multiplier: u32,
}

impl Default for VegasConfig {
    fn default() -> Self {
        VegasConfig {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            alpha: 3.0,
            beta: 6.0,
            smoothing: 1.0,
            probe_multiplier: 30,
        }
    }
}

impl VegasConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.initial_limit, self.min_limit, self.max_limit)?;
        check_f64("alpha", self.alpha, 0.0, 100.0)?;
        check_f64("beta", self.beta, self.alpha, 100.0)?;
        check_f64("smoothing", self.smoothing, 0.01, 1.0)?;
        check_range("probe_multiplier", self.probe_multiplier, 1, 100_000)
    }
}

#[derive(Debug)]
pub(crate) struct Vegas {
    config: VegasConfig,
    estimate: f64,
    /// The lowest latency seen since the last probe, in nanoseconds; 0 before any.
    rtt_noload: f64,
    /// Samples until the next probe.
    until_probe: u64,
}

impl Vegas {
    pub(crate) fn new(config: VegasConfig) -> Self {
        let estimate = f64::from(config.initial_limit);
        Vegas {
            until_probe: probe_after(&config, estimate),
            estimate,
            config,
            rtt_noload: 0.0,
        }
    }

    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        let c = &self.config;
        // Nanoseconds, at least one, so that the ratio stays finite.
        let rtt = (sample.rtt.as_nanos() as f64).max(1.0);
        self.until_probe = self.until_probe.saturating_sub(1);
        if self.until_probe == 0 {
            self.until_probe = probe_after(c, self.estimate);
            self.rtt_noload = rtt;
            return self.estimate as u32;
        }
        if self.rtt_noload == 0.0 || rtt < self.rtt_noload {
            self.rtt_noload = rtt;
            return self.estimate as u32;
        }
        if f64::from(sample.in_flight) * 2.0 < self.estimate {
            return self.estimate as u32;
        }
        let limit = self.estimate;
        let log = limit.max(1.0).log10().max(1.0);
        let next = if sample.dropped {
            limit - log
        } else {
            let queue = (limit * (1.0 - self.rtt_noload / rtt)).ceil();
            if queue <= log {
                limit + c.beta * log
            } else if queue < c.alpha * log {
                limit + log
            } else if queue > c.beta * log {
                limit - log
            } else {
                limit
            }
        };
        let next = limit * (1.0 - c.smoothing) + next * c.smoothing;
        self.estimate = next.clamp(f64::from(c.min_limit), f64::from(c.max_limit));
        self.estimate as u32
    }
}

fn probe_after(config: &VegasConfig, limit: f64) -> u64 {
    (f64::from(config.probe_multiplier) * limit).max(1.0) as u64
}
