use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Sample, check_bounds};
use crate::config::{ConfigError, check_f64, check_range};

/// TCP Vegas, as Netflix's `VegasLimit`: the limit follows an estimate of how many
/// calls are queued at the dependency, `queue = limit × (1 − no_load_rtt / rtt)`,
/// where `no_load_rtt` is the lowest latency seen since the last probe.
///
/// On each sample, with `l = log10(limit)`: a drop takes `l` away; otherwise a
/// queue of at most `l` adds `beta × l` (nothing is queued: grow fast), a queue below
/// `alpha × l` adds `l`, a queue above `beta × l` takes `l` away, and in between the
/// limit holds. The new value enters by `smoothing` and stays within
/// `min_limit..=max_limit`. While fewer than half the limit are in flight the limit
/// does not move (the caller, not the dependency, is the bottleneck). Every
/// `probe_multiplier × limit` samples `no_load_rtt` is forgotten and measured
/// again, so that a dependency that became slower for good is not read as queueing
/// forever.
///
/// The defaults are Netflix's, except `max_limit` (200, as the other algorithms
/// of this crate, instead of 1000: a server rarely runs more than a few hundred
/// calls at once, and a lower ceiling bounds the damage of a misreading).
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
    /// Below `alpha × log10(limit)` queued calls the limit grows; `1..=beta`.
    /// Default 3 (Netflix's).
    pub alpha: u32,
    /// Above `beta × log10(limit)` queued calls the limit shrinks; `alpha..=100`.
    /// Default 6 (Netflix's).
    pub beta: u32,
    /// How much of each new value enters the limit; `0.01..=1`. Default 1 (Netflix's:
    /// Vegas's steps are already small).
    pub smoothing: f64,
    /// The no-load latency is measured again every `probe_multiplier × limit`
    /// samples; `1..=1000`. Default 30 (Netflix's).
    pub probe_multiplier: u32,
}

impl Default for VegasConfig {
    fn default() -> Self {
        VegasConfig {
            initial_limit: 20,
            min_limit: 20,
            max_limit: 200,
            alpha: 3,
            beta: 6,
            smoothing: 1.0,
            probe_multiplier: 30,
        }
    }
}

impl VegasConfig {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_bounds(self.initial_limit, self.min_limit, self.max_limit)?;
        check_range("beta", self.beta, 1, 100)?;
        check_range("alpha", self.alpha, 1, self.beta)?;
        check_f64("smoothing", self.smoothing, 0.01, 1.0)?;
        check_range("probe_multiplier", self.probe_multiplier, 1, 1000)
    }
}

#[derive(Debug)]
pub(crate) struct Vegas {
    config: VegasConfig,
    estimate: f64,
    /// The lowest latency since the last probe, if any yet.
    no_load_rtt: Option<Duration>,
    /// Samples since the last probe.
    since_probe: u64,
}

impl Vegas {
    pub(crate) fn new(config: VegasConfig) -> Self {
        Vegas {
            estimate: f64::from(config.initial_limit),
            config,
            no_load_rtt: None,
            since_probe: 0,
        }
    }

    pub(crate) fn update(&mut self, sample: Sample) -> u32 {
        let c = &self.config;
        self.since_probe += 1;
        if self.since_probe > u64::from(c.probe_multiplier) * self.estimate as u64 {
            self.since_probe = 0;
            self.no_load_rtt = None;
        }
        let rtt = sample.rtt.max(Duration::from_nanos(1));
        if !sample.dropped {
            match self.no_load_rtt {
                Some(min) if min <= rtt => {}
                _ => {
                    self.no_load_rtt = Some(rtt);
                    // The first sample after a probe only measures.
                    return self.estimate as u32;
                }
            }
        }
        if f64::from(sample.in_flight) * 2.0 < self.estimate {
            return self.estimate as u32;
        }
        let limit = self.estimate;
        let l = limit.log10().max(1.0);
        let next = if sample.dropped {
            limit - l
        } else {
            let no_load = self.no_load_rtt.unwrap_or(rtt).as_secs_f64();
            let queue = (limit * (1.0 - no_load / rtt.as_secs_f64())).ceil();
            if queue <= l {
                limit + f64::from(c.beta) * l
            } else if queue < f64::from(c.alpha) * l {
                limit + l
            } else if queue > f64::from(c.beta) * l {
                limit - l
            } else {
                limit
            }
        };
        let next = limit * (1.0 - c.smoothing) + next * c.smoothing;
        self.estimate = next.clamp(f64::from(c.min_limit), f64::from(c.max_limit));
        self.estimate as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, in_flight: u32, dropped: bool) -> Sample {
        Sample {
            rtt: Duration::from_millis(ms),
            in_flight,
            dropped,
        }
    }

    fn vegas() -> Vegas {
        Vegas::new(VegasConfig {
            min_limit: 1,
            ..VegasConfig::default()
        })
    }

    #[test]
    fn grows_while_nothing_queues() {
        let mut v = vegas();
        v.update(sample(10, 20, false));
        let grown = v.update(sample(10, 20, false));
        assert!(grown > 20, "{grown}");
    }

    #[test]
    fn shrinks_when_latency_shows_a_queue() {
        let mut v = vegas();
        v.update(sample(10, 20, false));
        // Twice the no-load latency: half the calls are queued, far above beta.
        let shrunk = v.update(sample(20, 20, false));
        assert!(shrunk < 20, "{shrunk}");
        let dropped = v.update(sample(10, 20, true));
        assert!(dropped < shrunk, "{dropped} < {shrunk}");
    }

    #[test]
    fn holds_while_the_caller_is_the_bottleneck() {
        let mut v = vegas();
        v.update(sample(10, 2, false));
        assert_eq!(v.update(sample(50, 2, false)), 20);
    }

    #[test]
    fn probes_the_no_load_latency_again() {
        let mut v = Vegas::new(VegasConfig {
            min_limit: 1,
            probe_multiplier: 1,
            ..VegasConfig::default()
        });
        v.update(sample(10, 20, false));
        for _ in 0..100 {
            v.update(sample(40, 200, false));
        }
        // The dependency became slower for good: after a probe 40 ms is the new floor.
        assert_eq!(v.no_load_rtt, Some(Duration::from_millis(40)));
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = VegasConfig {
            alpha: 7,
            ..VegasConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), "alpha");
        let e = VegasConfig {
            max_limit: 0,
            ..VegasConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field(), "max_limit");
        assert!(VegasConfig::default().validate().is_ok());
    }
}
