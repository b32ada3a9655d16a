//! What the endpoint strategies report: events to a callback, tracing events, and
//! (with the `metrics` feature) counters and gauges through the `metrics` facade.
//!
//! | metric | kind | labels | what |
//! | --- | --- | --- | --- |
//! | `palisade_endpoint_ejections_total` | counter | `balancer`, `reason` | endpoints ejected, by reason: `consecutive_failures`, `failure_rate`, `latency`, `probation_failed` |
//! | `palisade_endpoint_ejections_refused_total` | counter | `balancer` | ejections the maximum ejected share refused |
//! | `palisade_endpoint_readmissions_total` | counter | `balancer`, `to` | endpoints back in rotation: `probation` when an ejection ends, `healthy` when probation passes |
//! | `palisade_endpoint_ejected` | gauge | `balancer` | endpoints ejected now |
//! | `palisade_coalesce_overflow_total` | counter | — | calls run uncoalesced because the coalescer's key bound was reached |

use std::fmt;
use std::time::Duration;

/// Names of the metrics, for dashboards and alerts.
pub mod names {
    /// Endpoints ejected, by reason.
    pub const EJECTIONS: &str = "palisade_endpoint_ejections_total";
    /// Ejections refused by the maximum ejected share.
    pub const EJECTIONS_REFUSED: &str = "palisade_endpoint_ejections_refused_total";
    /// Endpoints readmitted (to probation) or restored (to healthy).
    pub const READMISSIONS: &str = "palisade_endpoint_readmissions_total";
    /// Endpoints ejected now.
    pub const EJECTED: &str = "palisade_endpoint_ejected";
    /// Calls run uncoalesced because the coalescer was full.
    pub const COALESCE_OVERFLOW: &str = "palisade_coalesce_overflow_total";
}

/// Why an endpoint was ejected.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EjectReason {
    /// It failed `consecutive_failures` calls in a row.
    ConsecutiveFailures,
    /// Its failure rate over the window reached `failure_rate`.
    FailureRate,
    /// Its median latency exceeded `latency_factor` × the median of the others.
    Latency,
    /// It failed a call while on probation.
    ProbationFailed,
}

impl EjectReason {
    /// The reason as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::ConsecutiveFailures => "consecutive_failures",
            EjectReason::FailureRate => "failure_rate",
            EjectReason::Latency => "latency",
            EjectReason::ProbationFailed => "probation_failed",
        }
    }
}

impl fmt::Display for EjectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of one endpoint's state, passed to the `on_event` callback.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The endpoint was ejected for `duration` (its `ejections`-th ejection in a row).
    Ejected {
        /// The endpoint, as its `Debug` form.
        endpoint: String,
        /// Why.
        reason: EjectReason,
        /// For how long.
        duration: Duration,
        /// Ejections without a passed probation in between, this one included.
        ejections: u32,
    },
    /// The endpoint met an ejection condition, but the maximum share of ejected
    /// endpoints was reached: it stays in rotation.
    EjectionRefused {
        /// The endpoint, as its `Debug` form.
        endpoint: String,
        /// The condition it met.
        reason: EjectReason,
    },
    /// The endpoint's ejection ended: it takes calls again, on probation.
    Probation {
        /// The endpoint, as its `Debug` form.
        endpoint: String,
    },
    /// The endpoint passed its probation: healthy, its ejection count reset.
    Restored {
        /// The endpoint, as its `Debug` form.
        endpoint: String,
    },
}

/// Emits the tracing event and the metrics of `event` for balancer `name`.
pub(crate) fn emit(name: &str, event: &Event, ejected_now: usize) {
    match event {
        Event::Ejected {
            endpoint,
            reason,
            duration,
            ejections,
        } => {
            tracing::warn!(
                target: "palisade::endpoint",
                balancer = name,
                endpoint = endpoint.as_str(),
                reason = reason.as_str(),
                duration_ms = duration.as_millis() as u64,
                ejections = *ejections,
                "endpoint ejected"
            );
            #[cfg(feature = "metrics")]
            metrics::counter!(names::EJECTIONS, "balancer" => name.to_owned(), "reason" => reason.as_str())
                .increment(1);
        }
        Event::EjectionRefused { endpoint, reason } => {
            tracing::debug!(
                target: "palisade::endpoint",
                balancer = name,
                endpoint = endpoint.as_str(),
                reason = reason.as_str(),
                "endpoint ejection refused: maximum ejected share reached"
            );
            #[cfg(feature = "metrics")]
            metrics::counter!(names::EJECTIONS_REFUSED, "balancer" => name.to_owned()).increment(1);
        }
        Event::Probation { endpoint } => {
            tracing::info!(
                target: "palisade::endpoint",
                balancer = name,
                endpoint = endpoint.as_str(),
                "endpoint readmitted on probation"
            );
            #[cfg(feature = "metrics")]
            metrics::counter!(names::READMISSIONS, "balancer" => name.to_owned(), "to" => "probation")
                .increment(1);
        }
        Event::Restored { endpoint } => {
            tracing::info!(
                target: "palisade::endpoint",
                balancer = name,
                endpoint = endpoint.as_str(),
                "endpoint passed probation"
            );
            #[cfg(feature = "metrics")]
            metrics::counter!(names::READMISSIONS, "balancer" => name.to_owned(), "to" => "healthy")
                .increment(1);
        }
    }
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::EJECTED, "balancer" => name.to_owned()).set(ejected_now as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = ejected_now;
}

/// A call the coalescer ran on its own because its key bound was reached.
pub(crate) fn coalesce_overflow() {
    tracing::debug!(
        target: "palisade::endpoint",
        "coalescer full: call runs uncoalesced"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(names::COALESCE_OVERFLOW).increment(1);
}
