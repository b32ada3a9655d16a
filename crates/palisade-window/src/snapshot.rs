//! What a window saw: [`WindowSnapshot`] and [`Latency`].

use std::fmt;
use std::time::Duration;

use crate::histogram::{self, BINS};

/// The counts of a window at one moment, and its totals since it was created.
///
/// `calls` counts successes and failures; ignored outcomes are not calls (they are
/// counted in [`total_ignored`](WindowSnapshot::total_ignored) only). A snapshot taken while
/// other threads record is a consistent bound rather than an instant: every count is
/// at most the window's capacity, `failures` and `slow_calls` are at most `calls`,
/// and both rates lie in `[0, 1]`.
#[derive(Clone, PartialEq, Eq)]
pub struct WindowSnapshot {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow_calls: u64,
    pub(crate) total_calls: u64,
    pub(crate) total_failures: u64,
    pub(crate) total_slow_calls: u64,
    pub(crate) total_ignored: u64,
    pub(crate) latency: Option<Latency>,
}

impl WindowSnapshot {
    /// Successes and failures in the window.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Failures in the window.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Successes in the window.
    pub fn successes(&self) -> u64 {
        self.calls - self.failures
    }

    /// Calls in the window (successes or failures) that took at least the slow-call
    /// threshold.
    pub fn slow_calls(&self) -> u64 {
        self.slow_calls
    }

    /// `failures / calls`, or 0 when the window holds no call.
    pub fn failure_rate(&self) -> f64 {
        rate(self.failures, self.calls)
    }

    /// `slow_calls / calls`, or 0 when the window holds no call.
    pub fn slow_call_rate(&self) -> f64 {
        rate(self.slow_calls, self.calls)
    }

    /// Whether the window holds no call.
    pub fn is_empty(&self) -> bool {
        self.calls == 0
    }

    /// Calls (successes and failures) recorded since the window was created,
    /// including those that have left the window and those cleared by `reset`.
    pub fn total_calls(&self) -> u64 {
        self.total_calls
    }

    /// Failures recorded since the window was created.
    pub fn total_failures(&self) -> u64 {
        self.total_failures
    }

    /// Slow calls recorded since the window was created.
    pub fn total_slow_calls(&self) -> u64 {
        self.total_slow_calls
    }

    /// Ignored outcomes recorded since the window was created.
    pub fn total_ignored(&self) -> u64 {
        self.total_ignored
    }

    /// The latency distribution of the calls in the window that were recorded with a
    /// duration; `None` for windows that keep none (the count-based window).
    pub fn latency(&self) -> Option<&Latency> {
        self.latency.as_ref()
    }

    /// Builds a snapshot, bounding the counts as the type promises.
    pub(crate) fn bounded(
        capacity: u64,
        calls: i64,
        failures: i64,
        slow_calls: i64,
        totals: [u64; 4],
        latency: Option<Latency>,
    ) -> Self {
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::NoClamp) {
            // Deliberately wrong: the raw counts, for the loom model to catch.
            return WindowSnapshot {
                calls: calls as u64,
                failures: failures as u64,
                slow_calls: slow_calls as u64,
                total_calls: totals[0],
                total_failures: totals[1],
                total_slow_calls: totals[2],
                total_ignored: totals[3],
                latency,
            };
        }
        let calls = (calls.max(0) as u64).min(capacity);
        let failures = (failures.max(0) as u64).min(calls);
        let slow_calls = (slow_calls.max(0) as u64).min(calls);
        WindowSnapshot {
            calls,
            failures,
            slow_calls,
            total_calls: totals[0],
            total_failures: totals[1].min(totals[0]),
            total_slow_calls: totals[2].min(totals[0]),
            total_ignored: totals[3],
            latency,
        }
    }
}

fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64).clamp(0.0, 1.0)
    }
}

impl fmt::Debug for WindowSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Snapshot");
        d.field("calls", &self.calls)
            .field("failures", &self.failures)
            .field("slow_calls", &self.slow_calls)
            .field("failure_rate", &self.failure_rate())
            .field("slow_call_rate", &self.slow_call_rate())
            .field("total_calls", &self.total_calls)
            .field("total_failures", &self.total_failures)
            .field("total_slow_calls", &self.total_slow_calls)
            .field("total_ignored", &self.total_ignored);
        if let Some(latency) = &self.latency {
            d.field("latency", latency);
        }
        d.finish()
    }
}

/// A latency distribution: a fixed histogram of call durations.
///
/// Durations fall into 106 bins: under 1 µs, then four bins per power of two up to
/// 2^36 ns (about 68.7 s), then one bin for everything longer. A percentile reports
/// the upper edge of its bin, so it is never below the true value and at most 25 %
/// above it (durations of 68.7 s and longer report 68.7 s).
#[derive(Clone, PartialEq, Eq)]
pub struct Latency {
    pub(crate) bins: [u64; BINS],
    pub(crate) count: u64,
}

impl Latency {
    #[cfg(test)]
    pub(crate) fn from_bins(bins: [u64; BINS]) -> Self {
        let count = bins.iter().sum();
        Latency { bins, count }
    }

    /// How many durations the distribution holds.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the distribution holds no duration.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The duration that a fraction `q` of the calls did not exceed (`q` in
    /// `[0, 1]`, clamped there; NaN counts as 1), or `None` without durations.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the wanted value, 1-based: at least the first.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bin, &n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(histogram::reported(bin));
            }
        }
        self.max()
    }

    /// The median.
    pub fn p50(&self) -> Option<Duration> {
        self.quantile(0.50)
    }

    /// The 90th percentile.
    pub fn p90(&self) -> Option<Duration> {
        self.quantile(0.90)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }

    /// The longest duration (the upper edge of the highest occupied bin).
    pub fn max(&self) -> Option<Duration> {
        self.bins
            .iter()
            .rposition(|&n| n > 0)
            .map(histogram::reported)
    }
}

impl fmt::Debug for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Latency")
            .field("count", &self.count)
            .field("p50", &self.p50())
            .field("p90", &self.p90())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency_of(durations: &[u64]) -> Latency {
        let mut bins = [0; BINS];
        for &d in durations {
            bins[histogram::bin_of(d)] += 1;
        }
        Latency::from_bins(bins)
    }

    #[test]
    fn percentiles_of_a_spread() {
        // 1..=100 ms.
        let durations: Vec<u64> = (1..=100).map(|ms| ms * 1_000_000).collect();
        let l = latency_of(&durations);
        assert_eq!(l.count(), 100);
        for (q, exact_ms) in [(0.5, 50u64), (0.9, 90), (0.99, 99), (1.0, 100)] {
            let got = l.quantile(q).unwrap();
            let exact = Duration::from_millis(exact_ms);
            assert!(got >= exact, "q{q}: {got:?} < {exact:?}");
            assert!(
                got.as_secs_f64() <= exact.as_secs_f64() * 1.25,
                "q{q}: {got:?}"
            );
        }
        assert_eq!(l.max(), l.quantile(1.0));
        assert!(l.quantile(0.0).unwrap() >= Duration::from_millis(1));
        assert_eq!(l.quantile(f64::NAN), l.max());
    }

    #[test]
    fn empty_latency_has_no_percentiles() {
        let l = latency_of(&[]);
        assert!(l.is_empty());
        assert_eq!(l.p50(), None);
        assert_eq!(l.max(), None);
    }

    #[test]
    fn snapshot_bounds_counts_and_rates() {
        let s = WindowSnapshot::bounded(10, 12, 20, -3, [5, 9, 1, 0], None);
        assert_eq!(s.calls(), 10);
        assert_eq!(s.failures(), 10);
        assert_eq!(s.slow_calls(), 0);
        assert_eq!(s.failure_rate(), 1.0);
        assert_eq!(s.total_failures(), 5);
        let empty = WindowSnapshot::bounded(10, -1, 1, 1, [0; 4], None);
        assert!(empty.is_empty());
        assert_eq!(empty.failure_rate(), 0.0);
        assert_eq!(empty.slow_call_rate(), 0.0);
    }
}
