//! Isolation for one dependency: bulkheads, rate limiters, adaptive concurrency
//! limits and client-side adaptive throttling.
//!
//! | strategy | what it bounds | rejection |
//! | --- | --- | --- |
//! | [`Bulkhead`] | calls in flight at once, with an optional bounded FIFO wait queue | [`Strategy::Bulkhead`](palisade_classify::Strategy::Bulkhead) |
//! | [`RateLimiter`] | calls per period (GCRA, one atomic word), with a burst | [`Strategy::RateLimiter`](palisade_classify::Strategy::RateLimiter), with when to retry |
//! | [`KeyedRateLimiter`] | calls per period for each key, in bounded memory | as above |
//! | [`Throttle`] | calls sent while the dependency refuses many (the SRE book's client-side throttling) | [`Strategy::Throttle`](palisade_classify::Strategy::Throttle) |
//! | [`AdaptiveLimiter`] | calls in flight, with a limit learned from latency and drops (AIMD, Gradient2) | [`Strategy::AdaptiveLimit`](palisade_classify::Strategy::AdaptiveLimit) |
//!
//! Every strategy reads time through a [`Clock`](palisade_clock::Clock), so tests run
//! in virtual time, is configured by a serde configuration validated with errors that
//! name the field and its allowed range, reports state changes as `tracing` events
//! and has a snapshot of its counters.
//!
//! # Example
//!
//! ```
//! use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let bulkhead = Bulkhead::new(BulkheadConfig::new(10)).unwrap();
//! let limiter = RateLimiter::new(RateLimiterConfig::per_second(100)).unwrap();
//!
//! limiter.check().unwrap();
//! let permit = bulkhead.try_acquire().unwrap();
//! // ... call the dependency ...
//! drop(permit);
//! # }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod adaptive;
pub mod bulkhead;
mod config;
pub mod rate;
mod sync;
pub mod throttle;
mod wait;

pub use adaptive::{AdaptiveConfig, AdaptiveLimiter, AdaptivePermit, LimitReached};
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadFull, BulkheadSnapshot, OwnedPermit, Permit};
pub use config::ConfigError;
pub use rate::{
    KeyedRateLimiter, KeyedRateLimiterConfig, RateLimited, RateLimiter, RateLimiterConfig,
    RateLimiterSnapshot,
};
pub use throttle::{Throttle, ThrottleConfig, Throttled};
pub use wait::WaitError;

/// Hooks that break the bulkhead on purpose, for the loom models only.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::broken::{Bug, set};
}
