//! The metrics every pipeline reports through the [`metrics`] facade.
//!
//! With the `metrics` feature, each pipeline registers its metrics once, when it is
//! built, with the recorder installed at that moment (install the exporter first),
//! labelled with `dependency` = the pipeline's name. A call then only increments
//! handles: no allocation, no lock, no lookup.
//!
//! | metric | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `palisade_calls_total` | counter | `dependency`, `outcome` | executions, by how they ended: `success`, `error`, `rejected`, `timeout`, `cancelled`, `panicked`, `retries_exhausted`, `fallback_failed` |
//! | `palisade_attempts_total` | counter | `dependency`, `outcome` | attempts, by outcome: `success`, `transient`, `permanent`, `ignored`, `rejected` |
//! | `palisade_rejections_total` | counter | `dependency`, `strategy` | attempts refused, by strategy: `circuit_breaker`, `bulkhead`, `rate_limiter`, ... |
//! | `palisade_call_duration_seconds` | histogram | `dependency` | the time of a whole execution, retries included |
//! | `palisade_breaker_state` | gauge | `dependency` | 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed, 5 disabled |
//! | `palisade_bulkhead_in_flight` | gauge | `dependency` | calls holding a bulkhead permit |
//!
//! [`describe`] registers their descriptions and units with the recorder.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use palisade_classify::{Outcome, Strategy};

/// Names of the metrics, for dashboards and alerts.
pub mod names {
    /// Executions, by outcome.
    pub const CALLS: &str = "palisade_calls_total";
    /// Attempts, by outcome.
    pub const ATTEMPTS: &str = "palisade_attempts_total";
    /// Rejections, by strategy.
    pub const REJECTIONS: &str = "palisade_rejections_total";
    /// Duration of whole executions.
    pub const CALL_DURATION: &str = "palisade_call_duration_seconds";
    /// The breaker's state as a number.
    pub const BREAKER_STATE: &str = "palisade_breaker_state";
    /// Calls in flight through the bulkhead.
    pub const BULKHEAD_IN_FLIGHT: &str = "palisade_bulkhead_in_flight";
}

/// Registers the descriptions and units of every pipeline metric with the
/// installed recorder (call once, after installing it).
pub fn describe() {
    metrics::describe_counter!(names::CALLS, Unit::Count, "Pipeline executions, by outcome");
    metrics::describe_counter!(names::ATTEMPTS, Unit::Count, "Attempts, by outcome");
    metrics::describe_counter!(
        names::REJECTIONS,
        Unit::Count,
        "Attempts refused by a strategy, by strategy"
    );
    metrics::describe_histogram!(
        names::CALL_DURATION,
        Unit::Seconds,
        "Duration of whole executions, retries included"
    );
    metrics::describe_gauge!(
        names::BREAKER_STATE,
        "Circuit breaker state: 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed, 5 disabled"
    );
    metrics::describe_gauge!(names::BULKHEAD_IN_FLIGHT, "Calls holding a bulkhead permit");
}

const CALL_OUTCOMES: [&str; 9] = [
    "success",
    "error",
    "rejected",
    "timeout",
    "cancelled",
    "panicked",
    "retries_exhausted",
    "fallback_failed",
    "other",
];
const ATTEMPT_OUTCOMES: [&str; 5] = ["success", "transient", "permanent", "ignored", "rejected"];
const STRATEGIES: [&str; 8] = [
    "circuit_breaker",
    "bulkhead",
    "rate_limiter",
    "adaptive_limit",
    "throttle",
    "retry_budget",
    "deadline",
    "other",
];

/// The handles of one pipeline's metrics.
pub(crate) struct PipelineMetrics {
    calls: [Counter; CALL_OUTCOMES.len()],
    attempts: [Counter; ATTEMPT_OUTCOMES.len()],
    rejections: [Counter; STRATEGIES.len()],
    duration: Histogram,
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    breaker_state: Gauge,
    #[cfg_attr(not(feature = "limit"), allow(dead_code))]
    bulkhead_in_flight: Gauge,
}

impl PipelineMetrics {
    pub(crate) fn new(dependency: &str) -> Self {
        let dep = dependency.to_owned();
        let calls = CALL_OUTCOMES
            .map(|o| metrics::counter!(names::CALLS, "dependency" => dep.clone(), "outcome" => o));
        let attempts = ATTEMPT_OUTCOMES.map(
            |o| metrics::counter!(names::ATTEMPTS, "dependency" => dep.clone(), "outcome" => o),
        );
        let rejections = STRATEGIES.map(
            |s| metrics::counter!(names::REJECTIONS, "dependency" => dep.clone(), "strategy" => s),
        );
        PipelineMetrics {
            calls,
            attempts,
            rejections,
            duration: metrics::histogram!(names::CALL_DURATION, "dependency" => dep.clone()),
            breaker_state: metrics::gauge!(names::BREAKER_STATE, "dependency" => dep.clone()),
            bulkhead_in_flight: metrics::gauge!(names::BULKHEAD_IN_FLIGHT, "dependency" => dep),
        }
    }

    #[inline]
    pub(crate) fn call(&self, kind: &str, elapsed: Duration) {
        let i = CALL_OUTCOMES
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(CALL_OUTCOMES.len() - 1);
        self.calls[i].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }

    #[inline]
    pub(crate) fn attempt(&self, outcome: &Outcome) {
        let i = match outcome {
            Outcome::Success => 0,
            Outcome::Transient(_) => 1,
            Outcome::Permanent => 2,
            Outcome::Rejected(r) => {
                self.rejected(r.strategy());
                4
            }
            _ => 3,
        };
        self.attempts[i].increment(1);
    }

    #[inline]
    fn rejected(&self, strategy: Strategy) {
        let name = strategy.as_str();
        let i = STRATEGIES
            .iter()
            .position(|s| *s == name)
            .unwrap_or(STRATEGIES.len() - 1);
        self.rejections[i].increment(1);
    }

    #[inline]
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    pub(crate) fn breaker_state(&self, state: f64) {
        self.breaker_state.set(state);
    }

    #[inline]
    #[cfg_attr(not(feature = "limit"), allow(dead_code))]
    pub(crate) fn bulkhead_in_flight(&self, n: f64) {
        self.bulkhead_in_flight.set(n);
    }
}
