//! A breaker's state and counters, read together.

use std::time::Duration;

use palisade_clock::Timestamp;

use crate::{Reason, State};

/// What [`Breaker::snapshot`](crate::Breaker::snapshot) returns.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state.
    pub state: State,
    /// The generation of the state: it grows by one on every transition.
    pub generation: u64,
    /// Whether the breaker only records and reports (never rejects).
    pub metrics_only: bool,
    /// Counted calls in the window (successes and failures).
    pub calls: u64,
    /// Failures in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `failures / calls`, in percent (0 when the window is empty).
    pub failure_rate: f64,
    /// `slow_calls / calls`, in percent (0 when the window is empty).
    pub slow_call_rate: f64,
    /// The current run of failures.
    pub consecutive_failures: u32,
    /// How long the breaker has been in this state.
    pub time_in_state: Duration,
    /// When open: how long until it lets probes through.
    pub retry_after: Option<Duration>,
    /// When half-open: the probes running.
    pub probes_in_flight: u32,
    /// When half-open: the probes that succeeded.
    pub probe_successes: u32,
    /// When half-open: the probes that failed.
    pub probe_failures: u32,
    /// The breaker's last opening since it was built, if any.
    pub last_opening: Option<Opening>,
}

/// Why and when a breaker last opened, with the window's figures at that moment:
/// from [`Breaker::last_opening`](crate::Breaker::last_opening) and
/// [`BreakerSnapshot::last_opening`]; a rejection carries the reason alone
/// ([`Rejected::opened_by`](crate::Rejected::opened_by)).
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Opening {
    /// The rule that fired, failed probes, or an operator.
    pub reason: Reason,
    /// When, on the breaker's clock.
    pub at: Timestamp,
    /// The generation of the open state it started.
    pub generation: u64,
    /// Counted calls in the window then.
    pub calls: u64,
    /// Failures in the window then.
    pub failures: u64,
    /// Slow calls in the window then.
    pub slow_calls: u64,
    /// `failures / calls` then, in percent (0 for an empty window).
    pub failure_rate: f64,
    /// `slow_calls / calls` then, in percent (0 for an empty window).
    pub slow_call_rate: f64,
    /// The run of failures then.
    pub consecutive_failures: u32,
}
