//! Transitions: what subscribers and tracing see.

use std::fmt;

use palisade_clock::Timestamp;

use crate::State;

/// One change of state, as passed to the subscribers of
/// [`BreakerBuilder::on_transition`](crate::BreakerBuilder::on_transition).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// The generation of the state entered; it grows by one on every transition, so
    /// a subscriber can order events that concurrent transitions deliver.
    pub generation: u64,
    /// Why.
    pub reason: Reason,
    /// When, on the breaker's clock.
    pub at: Timestamp,
    /// Whether the breaker is in metrics-only mode: the transition is one it would
    /// make, and no call is rejected because of it.
    pub metrics_only: bool,
}

/// Why a breaker changed state.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate over the window reached the threshold.
    FailureRate,
    /// The slow-call rate over the window reached the threshold.
    SlowCallRate,
    /// The configured number of failures in a row.
    ConsecutiveFailures,
    /// The open duration passed.
    OpenDurationElapsed,
    /// Enough probes succeeded.
    ProbesSucceeded,
    /// Too many probes failed.
    ProbesFailed,
    /// [`Breaker::force_open`](crate::Breaker::force_open).
    ForcedOpen,
    /// [`Breaker::open_for`](crate::Breaker::open_for) or
    /// [`Breaker::open_until`](crate::Breaker::open_until): open until a chosen
    /// instant, then half-open as usual.
    OpenedFor,
    /// [`Breaker::force_closed`](crate::Breaker::force_closed).
    ForcedClosed,
    /// [`Breaker::disable`](crate::Breaker::disable).
    Disabled,
    /// [`Breaker::reset`](crate::Breaker::reset).
    Reset,
}

impl Reason {
    /// A short, stable name for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Reason::FailureRate => "failure_rate",
            Reason::SlowCallRate => "slow_call_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::OpenDurationElapsed => "open_duration_elapsed",
            Reason::ProbesSucceeded => "probes_succeeded",
            Reason::ProbesFailed => "probes_failed",
            Reason::ForcedOpen => "forced_open",
            Reason::OpenedFor => "opened_for",
            Reason::ForcedClosed => "forced_closed",
            Reason::Disabled => "disabled",
            Reason::Reset => "reset",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Emits the tracing event of a transition: opening at WARN, the rest at INFO.
pub(crate) fn trace(name: &str, t: &Transition) {
    match t.to {
        State::Open | State::ForcedOpen => tracing::warn!(
            target: "palisade::breaker",
            breaker = name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            generation = t.generation,
            metrics_only = t.metrics_only,
            "circuit breaker opened"
        ),
        State::Closed | State::ForcedClosed => tracing::info!(
            target: "palisade::breaker",
            breaker = name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            generation = t.generation,
            metrics_only = t.metrics_only,
            "circuit breaker closed"
        ),
        State::HalfOpen => tracing::info!(
            target: "palisade::breaker",
            breaker = name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            generation = t.generation,
            metrics_only = t.metrics_only,
            "circuit breaker half-open: probing"
        ),
        State::Disabled => tracing::info!(
            target: "palisade::breaker",
            breaker = name,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            generation = t.generation,
            metrics_only = t.metrics_only,
            "circuit breaker disabled"
        ),
    }
}
