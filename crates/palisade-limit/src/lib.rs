//! Isolation for one dependency: bulkheads, rate limiters, adaptive concurrency
//! limits and client-side adaptive throttling.
//!
//! | strategy | what it bounds | rejection |
//! | --- | --- | --- |
//! | [`Bulkhead`] | calls in flight at once, with an optional bounded FIFO wait queue | [`Strategy::Bulkhead`](palisade_classify::Strategy::Bulkhead) |
//! | [`RateLimiter`] | calls per period (GCRA, one atomic word), with a burst | [`Strategy::RateLimiter`](palisade_classify::Strategy::RateLimiter), with when to retry |
//! | [`KeyedRateLimiter`] | calls per period for each key, in bounded memory | as above |
//! | [`RateLimit`] | the interface a pipeline asks of any rate limit: the [`RateLimiter`], or one kept on a server for a whole fleet (`palisade-limit-redis`) | as above |
//! | [`Throttle`] | calls sent while the dependency refuses many (the SRE book's client-side throttling) | [`Strategy::Throttle`](palisade_classify::Strategy::Throttle) |
//! | [`AdmissionController`](admission::AdmissionController) | requests admitted by a server: an adaptive limit shared by criticality classes, with a deadline-aware CoDel queue | [`Strategy::AdaptiveLimit`](palisade_classify::Strategy::AdaptiveLimit), with when to retry |
//! | [`AdaptiveLimiter`] | calls in flight, with a limit learned from latency and drops (AIMD, Gradient2, Vegas) | [`Strategy::AdaptiveLimit`](palisade_classify::Strategy::AdaptiveLimit) |
//!
//! Every strategy reads time through a [`Clock`](palisade_clock::Clock), so tests run
//! in virtual time; is configured by a serde configuration (durations in the
//! [duration grammar](palisade_clock::duration#the-grammar) of every Palisade configuration)
//! validated with errors that name the field and its allowed range (and can be reconfigured while in use: hot
//! reload); reports state changes as `tracing` events; and has a snapshot of its
//! counters. Every rejection converts into a
//! [`Rejection`](palisade_classify::Rejection) of the outcome taxonomy.
//!
//! # Waiting
//!
//! A bulkhead's queue and a rate limiter's wait are drop-safe: dropping the future
//! at any point leaves the queue at once and holds nothing (a rate-limit wait
//! reserves its slot when it starts and gives it back when dropped, as far as the
//! schedule allows: see [waiting](rate#waiting)). A caller that waits is not
//! counted as refused unless its wait ends without what it waited for. The `*_with` variants
//! ([`Bulkhead::acquire_with`], [`RateLimiter::until_ready_with`]) take the caller's
//! [`Context`](palisade_context::Context): the wait is bounded by its deadline and
//! ends when it is cancelled, with the cause in [`WaitError::Cancelled`].
//!
//! # Cost
//!
//! Healthy calls allocate nothing and take no lock. Acquiring and releasing a
//! bulkhead permit is one compare-and-swap each; a rate-limit check is a clock reading
//! and one compare-and-swap (see [`rate`] for which clock reading); a throttle check
//! is a cheap clock reading and two atomic loads while the dependency accepts calls.
//! The keyed rate limiter takes one shard's read lock. `cargo bench -p
//! palisade-limit` measures these paths.
//!
//! # Example
//!
//! ```
//! use palisade_context::Context;
//! use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let bulkhead = Bulkhead::new(BulkheadConfig::new(10).with_queue(100, Duration::from_millis(50)))
//!     .unwrap();
//! let limiter = RateLimiter::new(RateLimiterConfig::per_second(100)).unwrap();
//!
//! let (request, _guard) = Context::background().with_timeout(Duration::from_secs(1));
//! limiter.until_ready_with(&request).await.unwrap();
//! let permit = bulkhead.acquire_with(&request).await.unwrap();
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
pub mod admission;
pub mod bulkhead;
mod config;
pub mod rate;
mod sync;
pub mod throttle;
mod wait;

pub use adaptive::{AdaptiveConfig, AdaptiveLimiter, AdaptivePermit, LimitReached, VegasConfig};
pub use bulkhead::{
    Bulkhead, BulkheadConfig, BulkheadFull, BulkheadSnapshot, OwnedPermit, OwnedPermits, Permit,
    Permits,
};
pub use config::ConfigError;
pub use rate::{
    Acquire, KeyedRateLimiter, KeyedRateLimiterConfig, RateLimit, RateLimited, RateLimiter,
    RateLimiterConfig, RateLimiterSnapshot,
};
pub use throttle::{Throttle, ThrottleConfig, Throttled};
pub use wait::WaitError;

/// Hooks that break the bulkhead on purpose, for the loom models only.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::broken::{Bug, set};
}
