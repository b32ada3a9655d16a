//! The closed state's sliding window: the one place that knows the window types.

use std::time::Duration;

use palisade_classify::OutcomeKind;
use palisade_clock::{Clock, Timestamp};
use palisade_window::{CountConfig, CountWindow, TimeConfig, TimeWindow, Window};

use crate::config::{ConfigError, WindowConfig};

/// What the trip rules read from the window.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow_calls: u64,
}

#[derive(Debug)]
pub(crate) enum ClosedWindow<C: Clock> {
    Count(CountWindow),
    Time(TimeWindow<C>),
}

impl<C: Clock> ClosedWindow<C> {
    pub(crate) fn new(
        shape: WindowConfig,
        slow_call_threshold: Option<Duration>,
        clock: C,
    ) -> Result<Self, ConfigError> {
        let built = match shape {
            WindowConfig::Count { size } => CountWindow::new(
                CountConfig::new(size as usize).with_slow_call_threshold(slow_call_threshold),
            )
            .map(ClosedWindow::Count),
            WindowConfig::Time {
                buckets,
                bucket_width,
            } => TimeWindow::new(
                TimeConfig::new(buckets as usize, bucket_width)
                    .with_slow_call_threshold(slow_call_threshold),
                clock,
            )
            .map(ClosedWindow::Time),
        };
        built.map_err(|e| e.within("window"))
    }

    /// Records the outcome of an untimed call.
    #[inline(always)]
    pub(crate) fn record_untimed(&self, kind: OutcomeKind) {
        match self {
            ClosedWindow::Count(w) => w.record(kind),
            ClosedWindow::Time(w) => w.record(kind),
        }
    }

    /// Records an outcome; `timed` is the call's duration and the time it ended,
    /// when calls are timed.
    #[inline]
    pub(crate) fn record(&self, kind: OutcomeKind, timed: Option<(Duration, Timestamp)>) {
        match (self, timed) {
            (ClosedWindow::Count(w), None) => w.record(kind),
            (ClosedWindow::Count(w), Some((elapsed, _))) => w.record_with_duration(kind, elapsed),
            (ClosedWindow::Time(w), None) => w.record(kind),
            (ClosedWindow::Time(w), Some((elapsed, now))) => {
                w.record_with_duration_at(kind, elapsed, now)
            }
        }
    }

    pub(crate) fn counts(&self) -> Counts {
        let s = match self {
            ClosedWindow::Count(w) => w.snapshot(),
            ClosedWindow::Time(w) => w.snapshot(),
        };
        Counts {
            calls: s.calls(),
            failures: s.failures(),
            slow_calls: s.slow_calls(),
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        match self {
            ClosedWindow::Count(w) => w.memory_bytes(),
            ClosedWindow::Time(w) => w.memory_bytes(),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            ClosedWindow::Count(w) => w.reset(),
            ClosedWindow::Time(w) => w.reset(),
        }
    }
}
