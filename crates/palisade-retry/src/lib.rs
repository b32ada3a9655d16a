//! The retry executor: retries over a backoff schedule that respect the context's
//! deadline, a retry budget shared across calls, and hedging.
//!
//! - [`RetryPolicy`]: a [`Backoff`](palisade_backoff::Backoff) schedule, an optional
//!   [`RetryBudget`], optional [`Hedging`], retry-safety settings; built by a
//!   validating builder or from serde ([`RetryConfig`]).
//! - [`RetryPolicy::retry_with`] runs an operation: the closure gets an [`Attempt`]
//!   (its number, whether it is a hedge) and returns a future; a
//!   [`Classify`](palisade_classify::Classify) decides — transient failures are
//!   retried, everything else ends the call. [`retry`] is the same with every error
//!   transient.
//! - The executor never sleeps past the context's deadline, does not start an
//!   attempt that cannot start before it, stops at once when the context is
//!   cancelled during a sleep, and says why it stopped ([`RetryError`],
//!   [`StopReason`]).
//! - Nested retries do not multiply: an outer pipeline marks the context it passes
//!   down ([`mark_retrying`]) and an inner retry makes one attempt ([`Nested`]).
//! - Each attempt runs in a `retry.attempt` tracing span (attempt, hedge, delay,
//!   outcome); [`RetryPolicy::snapshot`] has the counters and the budget's.
//!
//! # Example
//!
//! ```
//! use palisade_backoff::{Backoff, Jitter};
//! use palisade_context::Context;
//! use palisade_retry::{RetryBudget, RetryPolicy};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .backoff(
//!         Backoff::exponential(Duration::from_millis(100))
//!             .jitter(Jitter::None)
//!             .max_attempts(4)
//!             .build()?,
//!     )
//!     .budget(RetryBudget::new())
//!     .build()?;
//!
//! let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(1));
//! let err = policy
//!     .retry(&ctx, |_attempt| async { Err::<(), _>("unavailable") })
//!     .await
//!     .unwrap_err();
//! // 100 ms + 200 ms + 400 ms of backoff fit in the second: four attempts.
//! assert!(err.is_exhausted());
//! assert_eq!(err.attempts(), 4);
//! assert_eq!(err.last_error(), Some(&"unavailable"));
//! assert_eq!(policy.snapshot().retries, 3);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod budget;
mod config;
mod error;
mod executor;
mod hedge;
mod policy;
mod sync;

pub use budget::{
    BudgetBuilder, BudgetConfig, BudgetSnapshot, DEFAULT_BUCKETS, DEFAULT_MIN_RETRIES_PER_SEC,
    DEFAULT_RETRY_RATIO, DEFAULT_WINDOW, RetryBudget,
};
#[cfg(loom)]
#[doc(hidden)]
pub use budget::{loom_break_deposit, loom_break_withdraw};
pub use config::RetryConfig;
pub use error::{ConfigError, RetryError, StopReason};
pub use executor::{Attempt, retry};
pub use hedge::{
    DEFAULT_HEDGE_FALLBACK, DEFAULT_MAX_HEDGES, HedgeDelay, Hedging, HedgingBuilder, HedgingConfig,
};
pub use policy::{
    MAX_ATTEMPTS, Nested, RetryMarker, RetryPolicy, RetryPolicyBuilder, RetrySnapshot, is_retrying,
    mark_retrying,
};
