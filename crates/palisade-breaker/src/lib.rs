//! A circuit breaker for async Rust: it stops calling a dependency that is failing,
//! lets a few probes find out when it has recovered, and closes again.
//!
//! ```
//! use palisade_breaker::{Breaker, BreakerConfig, State};
//! use palisade_classify::Outcome;
//! use palisade_clock::ManualClock;
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let config = BreakerConfig::default()
//!     .failure_rate_threshold(None)
//!     .consecutive_failures(Some(3));
//! let breaker = Breaker::builder(config).clock(clock.clone()).build().unwrap();
//!
//! // Two steps: ask, run the call, report how it ended.
//! for _ in 0..3 {
//!     let permit = breaker.try_acquire().unwrap();
//!     permit.record(Outcome::transient());
//! }
//! assert_eq!(breaker.state(), State::Open);
//!
//! // Open: rejected at once, with the time until the breaker tries again.
//! let rejected = breaker.try_acquire().unwrap_err();
//! assert_eq!(rejected.retry_after(), Some(Duration::from_secs(5)));
//!
//! // After the open duration the next call is a probe; enough good probes close it.
//! clock.advance(Duration::from_secs(5));
//! for _ in 0..3 {
//!     let probe = breaker.try_acquire().unwrap();
//!     assert!(probe.is_probe());
//!     probe.record(Outcome::Success);
//! }
//! assert_eq!(breaker.state(), State::Closed);
//! ```
//!
//! # States
//!
//! - **Closed**: calls pass. Their outcomes go into a sliding window (count- or
//!   time-based) and the trip rules watch them: failure rate at or above a
//!   threshold, slow-call rate at or above a threshold (both once the window holds
//!   a minimum number of calls), and N failures in a row. The rules are applied
//!   when a failure or a slow call is recorded, and the first that fires opens the
//!   breaker; both rate rules are applied then, so a slow call can trip the
//!   failure-rate rule and a failure the slow-call rule. A success that is not slow
//!   is never a trip: not when it brings the window to the minimum number of calls
//!   at a failure rate above the threshold, nor when older successes leaving a
//!   time window have raised the rate. The next failure or slow call applies the
//!   rules to the window as it is then. (A success cannot raise the failure rate;
//!   applying the rules on every success would put a read of the whole window on
//!   the healthy call's path.)
//! - **Open**: calls are rejected at once with [`Rejected::retry_after`]. The open
//!   duration is fixed or grows on each reopening ([`OpenDuration`]), back to its
//!   first value after a clean close. The first call after it has passed moves the
//!   breaker to half-open, or a timer does ([`OpenTransition::Timer`]).
//! - **Half-open**: at most K probes run at once, each holding a slot through its
//!   [`Permit`]. K counted outcomes decide: if the share of failed probes reaches
//!   the half-open threshold the breaker reopens, otherwise it closes (it decides as
//!   soon as the answer is certain). A probe that never reports gives up its slot
//!   after [`BreakerConfig::max_probe_wait`]; a dropped, ignored or cancelled probe
//!   frees its slot at once and counts nothing.
//! - Operator states: [`Breaker::force_open`], [`Breaker::force_closed`],
//!   [`Breaker::disable`], back with [`Breaker::reset`]. [`Breaker::open_for`] and
//!   [`Breaker::open_until`] open the breaker until a chosen instant, after which
//!   it goes half-open as after any opening. In **metrics-only** mode
//!   ([`BreakerConfig::metrics_only`]) the state machine runs and reports as usual
//!   but no call is ever rejected, and every call is recorded in the window, those
//!   it would have rejected included.
//!
//! # Generations
//!
//! Every transition bumps a generation kept in the same atomic word as the state.
//! A permit remembers the generation it was admitted under, and its outcome is
//! dropped if the breaker has moved on: a slow failure from before an outage was
//! detected cannot reopen a breaker that has just closed, and a success from before
//! cannot close one. The check and the window record are two steps, not one atomic
//! step: an outcome whose check passes in the instant before a transition can still
//! add one count to the window the new state starts with (at most one count per call
//! that was completing at that instant). Trips are decided again under the
//! transition lock from the window's counts, so such a count can only matter when
//! it is the one that crosses a threshold.
//!
//! # Cost
//!
//! A call in the closed state is one atomic load of the packed state word to be
//! admitted, and to report a second load of it (has the state moved on?) and one
//! window record: no lock, no allocation, no exact clock reading (the time-based
//! window and the slow-call rule read the coarse clock,
//! [`Clock::recent`](palisade_clock::Clock::recent)). The breaker itself writes
//! nothing on a healthy call; the time-based window (the default) counts in
//! per-thread stripes, so calls on different threads write different cache lines,
//! while the count-based window shares its position among all threads.
//! [`Breaker::call`] is one flat future ([`Call`]) around the caller's: admitted
//! on its first poll, recorded on the poll that completes it. A rejection in the
//! open state is two atomic loads, one coarse clock reading and a compare; so is a
//! half-open rejection while every probe slot is taken. Transitions, admitting
//! probes and their outcomes take a lock.
//!
//! # Configuration and hot reload
//!
//! [`BreakerConfig`] is built with setters or deserialized with serde (durations as
//! `"250ms"`, `"5s"`); every default is documented with its reason next to the
//! peers' choices. A breaker validates its configuration when it is built: a bad
//! value is a [`ConfigError`] naming the field and its allowed range.
//! [`Breaker::reconfigure`] applies a changed configuration to a live breaker and
//! keeps its state and counters; only a change of the window's shape needs a new
//! breaker.
//!
//! # Keyed breakers
//!
//! [`Registry`] holds one breaker per key (host, tenant, endpoint), created on demand
//! from one configuration, bounded by [`RegistryConfig::max_keys`] and an idle
//! timeout, so keys chosen by an attacker cannot grow memory without bound.
//!
//! # Observability
//!
//! Every transition is a tracing event on target `palisade::breaker` (opening at
//! WARN, the rest at INFO) and is passed to the subscribers of
//! [`BreakerBuilder::on_transition`]. [`Breaker::snapshot`] reads state, counts,
//! rates and time in state.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod breaker;
mod call;
mod config;
mod error;
mod event;
mod permit;
#[cfg(not(loom))]
mod registry;
mod snapshot;
mod state;
mod sync;
mod window;

/// Hooks that break the breaker on purpose, for the loom models' broken twins.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::broken::{Bug, set};
}

pub use breaker::{Breaker, BreakerBuilder};
pub use call::Call;
pub use config::{
    BreakerConfig, ConfigError, MAX_BUCKETS, MAX_COUNT_WINDOW, MAX_DURATION, MAX_PROBES,
    OpenDuration, OpenTransition, SlowCallConfig, WindowConfig,
};
pub use error::{CallError, Rejected};
pub use event::{Reason, Transition};
pub use permit::{OwnedPermit, Permit};
#[cfg(not(loom))]
pub use registry::{Registry, RegistryBuilder, RegistryConfig};
pub use snapshot::{BreakerSnapshot, Opening};

/// The old name of [`BreakerSnapshot`].
#[deprecated(since = "0.1.0", note = "renamed to `BreakerSnapshot`")]
pub type Snapshot = BreakerSnapshot;
pub use state::State;
