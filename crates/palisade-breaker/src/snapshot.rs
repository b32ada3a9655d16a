//! A breaker's state and counters, read together.

use std::time::Duration;

use crate::State;

/// What [`Breaker::snapshot`](crate::Breaker::snapshot) returns.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
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
}
