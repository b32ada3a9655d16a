//! The scripted timeline the dependency follows.

use std::fmt;
use std::time::Duration;

/// What the dependency does during one phase of the timeline.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Every request answers `200` after the base latency.
    Healthy,
    /// A share of the requests ([`Behaviour::spike_percent`]) answers only after
    /// [`Behaviour::spike_latency`], far beyond a sensible attempt timeout.
    LatencySpikes,
    /// Bursts of `503 Service Unavailable` with `Retry-After`: three bursts per phase,
    /// each covering [`Behaviour::burst_percent`] of its third of the phase.
    UnavailableBursts,
    /// A share of the requests ([`Behaviour::reset_percent`]) is read and then
    /// answered by a TCP reset: the connection is dropped without a response.
    ConnectionResets,
    /// The dependency is down: the listener is closed (connections are refused) and
    /// every open connection is reset.
    Outage,
    /// The dependency is back on the same port and healthy.
    Recovery,
}

impl Phase {
    /// A short name for tables, the progress line and the chart.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::LatencySpikes => "latency spikes",
            Phase::UnavailableBursts => "503 bursts",
            Phase::ConnectionResets => "connection resets",
            Phase::Outage => "outage",
            Phase::Recovery => "recovery",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the dependency misbehaves within its phases. Request-level timings are not
/// compressed with the timeline: a latency spike stays longer than an attempt
/// timeout however short the phases are.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Behaviour {
    /// The latency of a healthy answer. Default 5 ms: a fast backend on the same host.
    pub base_latency: Duration,
    /// The latency of a spiked answer. Default 1.5 s: a stall (a pause, a lock, a
    /// lost packet) longer than a one-second deadline, so a caller without an
    /// attempt timeout waits out its whole deadline and fails.
    pub spike_latency: Duration,
    /// The share of requests spiked during [`Phase::LatencySpikes`], in percent.
    /// Default 30.
    pub spike_percent: u8,
    /// The share of each burst period answered with `503`, in percent. Default 60.
    pub burst_percent: u8,
    /// The `Retry-After` the `503`s carry, in whole seconds. Default 1.
    pub retry_after_secs: u32,
    /// The share of requests reset during [`Phase::ConnectionResets`], in percent.
    /// Default 30: a retry gets most of them through, and a breaker that opens at
    /// half its calls failing stays closed.
    pub reset_percent: u8,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            base_latency: Duration::from_millis(5),
            spike_latency: Duration::from_millis(1500),
            spike_percent: 30,
            burst_percent: 60,
            retry_after_secs: 1,
            reset_percent: 30,
        }
    }
}

/// An error in a timeline or its compression factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineError(String);

impl fmt::Display for TimelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TimelineError {}

/// A sequence of phases with their durations.
///
/// ```
/// use palisade_demo::timeline::{Phase, Timeline};
/// use std::time::Duration;
///
/// let full = Timeline::standard();
/// assert_eq!(full.phases()[0].0, Phase::Healthy);
/// let short = full.compressed(0.25).unwrap();
/// assert_eq!(short.total(), full.total() / 4);
/// assert_eq!(short.phase_at(Duration::ZERO), Some(0));
/// assert!(Timeline::standard().compressed(0.0).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    phases: Vec<(Phase, Duration)>,
}

impl Timeline {
    /// The demo's timeline, 32 seconds: healthy 5 s, latency spikes 5 s, 503 bursts
    /// 5 s, connection resets 5 s, outage 6 s, recovery 6 s. The outage and the
    /// recovery are longer so that a breaker has time to open, probe, and close.
    pub fn standard() -> Self {
        let s = Duration::from_secs;
        Timeline {
            phases: vec![
                (Phase::Healthy, s(5)),
                (Phase::LatencySpikes, s(5)),
                (Phase::UnavailableBursts, s(5)),
                (Phase::ConnectionResets, s(5)),
                (Phase::Outage, s(6)),
                (Phase::Recovery, s(6)),
            ],
        }
    }

    /// A timeline of the given phases. Every duration must be at least 100 ms and
    /// an outage must be followed by another phase (the dependency comes back).
    pub fn new(phases: Vec<(Phase, Duration)>) -> Result<Self, TimelineError> {
        if phases.is_empty() {
            return Err(TimelineError("timeline: phases must not be empty".into()));
        }
        for (i, (phase, d)) in phases.iter().enumerate() {
            if *d < Duration::from_millis(100) {
                return Err(TimelineError(format!(
                    "timeline: phase {i} ({phase}) lasts {d:?}; allowed: at least 100ms"
                )));
            }
        }
        if phases.last().map(|p| p.0) == Some(Phase::Outage) {
            return Err(TimelineError(
                "timeline: the last phase must not be an outage; allowed: any other phase".into(),
            ));
        }
        Ok(Timeline { phases })
    }

    /// The same phases with every duration multiplied by `factor`, in `0.01..=10`.
    pub fn compressed(&self, factor: f64) -> Result<Self, TimelineError> {
        if !(0.01..=10.0).contains(&factor) {
            return Err(TimelineError(format!(
                "timeline: compression factor is {factor}; allowed: 0.01..=10"
            )));
        }
        Timeline::new(
            self.phases
                .iter()
                .map(|&(p, d)| (p, d.mul_f64(factor)))
                .collect(),
        )
    }

    /// The phases and their durations, in order.
    pub fn phases(&self) -> &[(Phase, Duration)] {
        &self.phases
    }

    /// The whole length of the timeline.
    pub fn total(&self) -> Duration {
        self.phases.iter().map(|p| p.1).sum()
    }

    /// When phase `index` starts, from the start of the timeline.
    pub fn start_of(&self, index: usize) -> Duration {
        self.phases.iter().take(index).map(|p| p.1).sum()
    }

    /// The start and end of the first phase of the given kind.
    pub fn span_of(&self, phase: Phase) -> Option<(Duration, Duration)> {
        let i = self.phases.iter().position(|p| p.0 == phase)?;
        let start = self.start_of(i);
        Some((start, start + self.phases[i].1))
    }

    /// The index of the phase at `offset` from the start, or `None` past the end.
    pub fn phase_at(&self, offset: Duration) -> Option<usize> {
        let mut end = Duration::ZERO;
        for (i, (_, d)) in self.phases.iter().enumerate() {
            end += *d;
            if offset < end {
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_timeline_walks_every_phase_once() {
        let t = Timeline::standard();
        assert_eq!(t.total(), Duration::from_secs(32));
        assert_eq!(t.phase_at(Duration::from_millis(4999)), Some(0));
        assert_eq!(t.phase_at(Duration::from_secs(5)), Some(1));
        assert_eq!(t.phase_at(Duration::from_secs(32)), None);
        assert_eq!(
            t.span_of(Phase::Outage),
            Some((Duration::from_secs(20), Duration::from_secs(26)))
        );
    }

    #[test]
    fn bad_timelines_name_the_field() {
        let e = Timeline::new(vec![(Phase::Healthy, Duration::from_millis(5))]).unwrap_err();
        assert!(e.to_string().contains("phase 0"), "{e}");
        let e = Timeline::new(vec![(Phase::Outage, Duration::from_secs(1))]).unwrap_err();
        assert!(e.to_string().contains("last phase"), "{e}");
        let e = Timeline::standard().compressed(f64::NAN).unwrap_err();
        assert!(e.to_string().contains("compression factor"), "{e}");
        assert!(Timeline::new(vec![]).is_err());
    }
}
