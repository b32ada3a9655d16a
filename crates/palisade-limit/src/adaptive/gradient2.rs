use serde::{Deserialize, Serialize};

use super::{Sample, check_bounds};
use crate::config::{ConfigError, check_f64, check_range};

/// Gradient2, as Netflix's `Gradient2Limit`: the limit follows the ratio of a
/// long-term average latency to the latest one.
///
/// On each sample: `gradient = clamp(rtt_tolerance × long_rtt / rtt, 0.5, 1)`, then
/// `limit = limit × (1 − smoothing) + (limit × gradient + queue_size) × smoothing`,
/// within `min_limit..=max_limit`. `long_rtt` is an exponential average over
/// `long_window` samples (a plain average over the first ten); when it is more than
/// twice the latest latency (load has passed) it is cut by 10 %. While fewer than
/// half the limit are in flight the limit does not move (the caller, not the
/// dependency, is the bottleneck).
///
/// One difference from Netflix's: a dropped call (a timeout, an overload rejection)
/// counts as the strongest sign of queueing, gradient 0.5, whatever its latency.
/// Netflix's reads only the latency, so a dependency that rejects quickly when full
/// looks fast and the limit grows without bound; here such a dependency holds the
/// limit near its capacity.
///
/// The defaults are Netflix's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Gradient2Config {
    /// The limit to start from; `min_limit..=max_limit`. Default 20.
    pub initial_limit: u32,
    /// The limit never goes below this; `1..=max_limit`. Default 20.
    pub min_limit: u32,
    /// The limit never goes above this; `min_limit..=1_000_000`. Default 200.
    pub max_limit: u32,
    /// How much of each new estimate enters the limit; `0.01..=1`. Default 0.2.
    pub smoothing: f64,
    /// How far above the current limit an estimate may reach while latency stays
    /// low; `0..=1000`. Default 4: room to probe for more capacity.
    pub queue_size: u32,
    /// Samples the long-term latency averages over; `10..=100_000`. Default 600.
    pub long_window: u32,
    /// How much slower than the long-term average the latest call may be before
    /// the limit shrinks; `1..=10`. Default 1 (Netflix's first Gradient2; later
    /// versions tolerate 1.5).
    pub rtt_tolerance: f64,
}

impl Default for Gradient2Config {
    fn default() -> Self {
        Gradient2Config {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            smoothing: 0.2,
            queue_size: 4,
            long_window: 600,
            rtt_tolerance: 1.0,
        }
    }
}

impl Gradient2Config {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.initial_limit, self.min_limit, self.max_limit)?;
        check_f64("smoothing", self.smoothing, 0.01, 1.0)?;
        check_range("queue_size", self.queue_size, 0, 1000)?;
        check_range("long_window", self.long_window, 10, 100_000)?;
        check_f64("rtt_tolerance", self.rtt_tolerance, 1.0, 10.0)
    }
}

/// Samples averaged plainly before the exponential average takes over.
const WARMUP: u32 = 10;

#[derive(Debug)]
pub(crate) struct Gradient2 {
    config: Gradient2Config,
    estimate: f64,
    long_rtt: f64,
    samples: u32,
}

impl Gradient2 {
    pub(crate) fn new(config: Gradient2Config) -> Self {
        Gradient2 {
            estimate: f64::from(config.initial_limit),
            config,
            long_rtt: 0.0,
            samples: 0,
        }
    }

    fn toward(&self, gradient: f64) -> f64 {
        let c = &self.config;
        let target = self.estimate * gradient + f64::from(c.queue_size);
        let next = self.estimate * (1.0 - c.smoothing) + target * c.smoothing;
        next.clamp(f64::from(c.min_limit), f64::from(c.max_limit))
    }

    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        let app_limited = f64::from(sample.in_flight) < self.estimate / 2.0;
        if sample.dropped {
            if !app_limited {
                self.estimate = self.toward(0.5);
            }
            return self.estimate as u32;
        }
        // Nanoseconds, at least one, so that the ratios stay finite.
        let rtt = (sample.rtt.as_nanos() as f64).max(1.0);
        if self.samples < WARMUP {
            self.samples += 1;
            self.long_rtt += (rtt - self.long_rtt) / f64::from(self.samples);
        } else {
            let factor = 2.0 / (f64::from(self.config.long_window) + 1.0);
            self.long_rtt = self.long_rtt * (1.0 - factor) + rtt * factor;
        }
        let long_rtt = self.long_rtt;
        if long_rtt / rtt > 2.0 {
            self.long_rtt *= 0.9;
        }
        if !app_limited {
            let gradient = (self.config.rtt_tolerance * long_rtt / rtt).clamp(0.5, 1.0);
            self.estimate = self.toward(gradient);
        }
        self.estimate as u32
    }
}
