//! The only source of time in Palisade.
//!
//! Every strategy (timeouts, backoff sleeps, open breakers, rate limits, sliding
//! windows) reads time through a [`Clock`], so that tests run in virtual time: a
//! test of a 60-second open state takes milliseconds and never sleeps for real.
//!
//! | clock | `now()` | sleeps | use it for |
//! | --- | --- | --- | --- |
//! | [`TokioClock`] (the default) | tokio's clock: follows `tokio::time::pause` and `#[tokio::test(start_paused = true)]` | tokio timers | everything, in production and in tests |
//! | [`MonotonicClock`] | the OS monotonic clock, never paused | tokio timers | code that must see real time even under a paused runtime |
//! | [`ManualClock`] | a shared counter moved only by [`ManualClock::advance`] | woken by `advance` | deterministic tests, also across threads and without a runtime |
//!
//! Time is a [`Timestamp`]: nanoseconds since a process-wide origin in one `u64`, so
//! lock-free structures can keep it in an atomic. All clocks of one process except the
//! manual one share that origin, so their timestamps compare.
//!
//! Durations in configuration text have one grammar, in [`duration`]: one parser,
//! one formatter and (feature `serde`) one serde module that every Palisade
//! configuration uses (`"250ms"`, `"1.5s"`, `"2min"`, `"1m30s"`, or a bare integer of
//! milliseconds).
//!
//! Refused configuration has one shape too: [`ConfigError`], the field as a dotted
//! path, the value given and what is allowed. Every Palisade crate returns it.
//!
//! # Cheap reads: `recent()`
//!
//! [`Clock::recent`] may lag `now()` by about a millisecond and costs one relaxed
//! atomic load instead of a system clock read (about 1 ns against 35 ns here).
//! Sliding windows and breakers read it on every call. [`TokioClock`] and
//! [`MonotonicClock`] answer it from a timestamp that a background thread,
//! `palisade-clock-ticker`, refreshes every millisecond; the thread starts on the
//! first `recent()` call and does one clock read per tick. Readings never run ahead
//! of `now()` and never go backwards; they lag by up to [`recent_resolution`] plus
//! any delay the operating system imposes on the thread.
//!
//! With this crate's `test-util` feature, [`TokioClock::recent`] is exact so that it
//! follows tokio's paused time: enable it in dev-dependencies next to tokio's
//! `test-util` (the facade's `test-util` feature does this).
//!
//! # Example
//!
//! ```
//! use palisade_clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let start = clock.now();
//! clock.advance(Duration::from_secs(60));
//! assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(60));
//! ```
//!
//! With tokio's paused time, the default clock and its sleeps move together:
//!
//! ```
//! use palisade_clock::{Clock, TokioClock};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let clock = TokioClock;
//! let start = clock.now();
//! clock.sleep(Duration::from_secs(3600)).await; // returns at once in paused time
//! assert_eq!(clock.now().saturating_duration_since(start), Duration::from_secs(3600));
//! # }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// This crate is where the clocks are implemented: it may read the OS clock.
#![allow(clippy::disallowed_methods)]

mod config_error;
pub mod duration;
mod manual;
mod origin;
mod ticker;
mod timestamp;
mod tokio_clock;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

pub use config_error::ConfigError;
pub use manual::{ManualClock, ManualSleep};
pub use origin::recent_resolution;
pub use timestamp::Timestamp;
pub use tokio_clock::{MonotonicClock, TokioClock, TokioSleep};

/// A source of time and of sleeps.
///
/// Implementations are cheap to clone; clones share one time. Timestamps from
/// different clocks compare only when the clocks share an origin (all clocks of this
/// crate except [`ManualClock`] do).
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait Clock: Clone + Send + Sync + Debug + 'static {
    /// The future returned by [`Clock::sleep_until`].
    type Sleep: Future<Output = ()> + Send + 'static;

    /// The current time, exactly.
    fn now(&self) -> Timestamp;

    /// The current time, possibly lagging `now()` by up to [`recent_resolution`];
    /// never ahead of it and never going backwards. Cheaper than `now()` where the
    /// platform allows; by default it is `now()`.
    #[inline]
    fn recent(&self) -> Timestamp {
        self.now()
    }

    /// A future that completes once this clock reaches `deadline` (at once if it has).
    fn sleep_until(&self, deadline: Timestamp) -> Self::Sleep;

    /// A future that completes after `duration` on this clock.
    #[inline]
    fn sleep(&self, duration: Duration) -> Self::Sleep {
        self.sleep_until(self.now().saturating_add(duration))
    }
}

/// The clock strategies use when none is given: [`TokioClock`].
///
/// It is the default because it is the only one that follows tokio's paused time, so
/// the same code runs in production and in virtual-time tests.
pub type DefaultClock = TokioClock;
