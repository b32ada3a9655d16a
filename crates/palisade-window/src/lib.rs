//! Sliding windows over call outcomes: the shared memory of breakers, adaptive
//! limiters, retry budgets and hedging.
//!
//! Every strategy that decides from "what happened recently" reads a window:
//!
//! - [`CountWindow`]: the last N calls, as a ring buffer.
//! - [`TimeWindow`]: the calls of the last `buckets × bucket_width` (say 10 × 1 s);
//!   a bucket whose time has passed is reset lazily by the next record or snapshot.
//!   It also keeps a latency histogram, for slow-call detection and hedging.
//!
//! Each record carries the [`OutcomeKind`] a classifier decided (success, failure,
//! ignored) and optionally the call's duration, from which slow calls are counted
//! against a threshold. A [`WindowSnapshot`] gives the calls, failures and slow calls in the
//! window, their rates, and totals since creation. Both windows implement [`Window`],
//! so a breaker can be generic over the kind of window.
//!
//! Recording is lock-free and allocation-free, and concurrent recorders never lose an
//! update. Memory is fixed at construction, and construction validates its
//! configuration with an error that names the field and its range.
//!
//! # Example
//!
//! ```
//! use palisade_clock::{Clock, ManualClock};
//! use palisade_window::{OutcomeKind, TimeConfig, TimeWindow, Window};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let window = TimeWindow::new(TimeConfig::default(), clock.clone()).unwrap();
//!
//! // The caller usually has the time already, from measuring the call.
//! let start = clock.now();
//! clock.advance(Duration::from_millis(30));
//! let end = clock.now();
//! window.record_with_duration_at(OutcomeKind::Failure, end - start, end);
//! window.record(OutcomeKind::Success);
//! window.record(OutcomeKind::Ignored);
//!
//! let snapshot = window.snapshot();
//! assert_eq!(snapshot.calls(), 2);
//! assert_eq!(snapshot.failure_rate(), 0.5);
//! assert_eq!(snapshot.total_ignored(), 1);
//! assert!(snapshot.latency().unwrap().p99().unwrap() >= Duration::from_millis(30));
//! ```
//!
//! # Cost
//!
//! A healthy time-window record (a success without a duration, in its thread's
//! current bucket) is one atomic addition on a counter of the recording thread's
//! stripe and reads no clock when the caller supplies the time
//! ([`Window::record_at`]); [`Window::record`] adds one [`Clock::recent`] reading.
//! A failure, a duration (its histogram bin) and a slow call each add one addition;
//! the first call of a new bucket, or of a thread's stripe, resets the bucket with
//! one compare-and-swap per counter. A count-window record is one addition on the
//! shared position, plus a slot swap and one addition when the outcome differs from
//! the one it replaces. A snapshot of a time window reads every counter and
//! histogram bin of every stripe that has been recorded into, once. `cargo bench -p
//! palisade-window` measures all of it next to a bare atomic addition.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod count;
mod fastmod;
mod histogram;
mod snapshot;
mod sync;
mod time;

use std::fmt::Debug;
use std::time::Duration;

pub use config::{
    ConfigError, CountConfig, MAX_BUCKET_WIDTH, MAX_BUCKETS, MAX_SIZE, MAX_SLOW_CALL_THRESHOLD,
    MAX_WINDOW, MIN_BUCKET_WIDTH, TimeConfig,
};
pub use count::CountWindow;
pub use palisade_classify::OutcomeKind;
pub use palisade_clock::{Clock, DefaultClock, Timestamp};
pub use snapshot::{Latency, WindowSnapshot};

/// The old name of [`WindowSnapshot`].
#[deprecated(since = "0.1.0", note = "renamed to `WindowSnapshot`")]
pub type Snapshot = WindowSnapshot;
pub use time::TimeWindow;

/// Hooks that break the windows on purpose, for the loom models only.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::broken::{Bug, set};
}

/// A sliding window of call outcomes: what [`CountWindow`] and [`TimeWindow`] have in
/// common, so that a strategy can be generic over its window.
///
/// ```
/// use palisade_window::{CountConfig, CountWindow, OutcomeKind, Window};
///
/// fn should_open(window: &impl Window) -> bool {
///     let s = window.snapshot();
///     s.calls() >= 10 && s.failure_rate() >= 0.5
/// }
///
/// let window = CountWindow::new(CountConfig::default()).unwrap();
/// for _ in 0..10 {
///     window.record(OutcomeKind::Failure);
/// }
/// assert!(should_open(&window));
/// ```
///
/// The trait is sealed: only this crate's windows implement it, so that methods can
/// be added to it without breaking anyone.
pub trait Window: Send + Sync + Debug + sealed::Sealed {
    /// Records one outcome without a duration.
    fn record(&self, kind: OutcomeKind);

    /// Records one outcome and how long the call took; a call that took at least the
    /// slow-call threshold counts as slow.
    fn record_with_duration(&self, kind: OutcomeKind, elapsed: Duration);

    /// Records one outcome at `now`, a time the caller read from the window's clock;
    /// saves a clock reading where the window needs the time.
    fn record_at(&self, kind: OutcomeKind, now: Timestamp) {
        let _ = now;
        self.record(kind);
    }

    /// Records one outcome and its duration at `now`, a time the caller read from the
    /// window's clock (typically the end of the call it just measured).
    fn record_with_duration_at(&self, kind: OutcomeKind, elapsed: Duration, now: Timestamp) {
        let _ = now;
        self.record_with_duration(kind, elapsed);
    }

    /// The window's counts now.
    fn snapshot(&self) -> WindowSnapshot;

    /// Empties the window. Totals since creation stay.
    fn reset(&self);
}

mod sealed {
    /// Keeps [`Window`](super::Window) to this crate's windows.
    pub trait Sealed {}
    impl Sealed for crate::CountWindow {}
    impl<C: palisade_clock::Clock> Sealed for crate::TimeWindow<C> {}
}
