//! Delay schedules for retries: how long to wait before each retry.
//!
//! A [`Backoff`] is a validated, `Copy` description — a curve (constant, linear,
//! exponential, Fibonacci, or AWS-style decorrelated jitter), a [`Jitter`] (none,
//! full, equal, proportional ±x %) and caps (max delay, max attempts, max total
//! elapsed). [`Backoff::iter`] hands out the delays as [`Delays`], a cheap `Clone`
//! iterator of [`Duration`](std::time::Duration)s that never allocates.
//!
//! Randomness is injectable: by default a fast per-thread generator
//! ([`ThreadLocalRng`], zero-sized, seeded once per thread, never per schedule), or a
//! seed for a reproducible sequence ([`Backoff::iter_seeded`], [`SeededRng`]), or any
//! `rand` generator ([`Backoff::iter_with_rng`]).
//!
//! Schedules are built by a validating builder or from serde configuration
//! ([`BackoffConfig`]); a bad value is a [`ConfigError`] naming the field and what it
//! allows, never a panic or a silent clamp.
//!
//! # Example
//!
//! ```
//! use palisade_backoff::{Backoff, Jitter};
//! use std::time::Duration;
//!
//! let backoff = Backoff::exponential(Duration::from_millis(100))
//!     .max_delay(Duration::from_secs(2))
//!     .jitter(Jitter::Equal)
//!     .max_attempts(5)
//!     .build()?;
//!
//! // Four delays (before retries 1..=4), each in [base / 2, base] of 100, 200, 400, 800 ms.
//! let delays: Vec<Duration> = backoff.iter_seeded(42).collect();
//! assert_eq!(delays.len(), 4);
//! for (delay, base_ms) in delays.iter().zip([100u64, 200, 400, 800]) {
//!     let base = Duration::from_millis(base_ms);
//!     assert!(base / 2 <= *delay && *delay <= base);
//! }
//! // The same seed, the same delays.
//! assert_eq!(delays, backoff.iter_seeded(42).collect::<Vec<_>>());
//! # Ok::<(), palisade_backoff::ConfigError>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod jitter;
mod rng;
mod schedule;

pub use config::{BackoffConfig, BackoffKind};
#[allow(deprecated)]
pub use config::{DurationParseError, parse_duration};
pub use error::ConfigError;
pub use jitter::Jitter;
pub use rng::{SeededRng, ThreadLocalRng};
pub use schedule::{
    Backoff, BackoffBuilder, DEFAULT_FACTOR, DEFAULT_INITIAL, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_DELAY, Delays,
};
