//! Tiered fallback chains: what a service answers when a dependency fails.
//!
//! A [`Fallback`] chain is a list of tiers tried in order, each stepping in only for
//! the outcomes its [`Trigger`] accepts (classes of the
//! [taxonomy](palisade_classify::Outcome) or a predicate):
//!
//! 1. a **static or computed value** (an empty recommendation list, "unknown");
//! 2. an **alternate async source** (a backup service, a stale cache);
//! 3. **asynchronous compensation**: a background task, owned by a [`Compensator`],
//!    handed the caller's context without its cancellation ([`Detach`]), that
//!    records or retries the failed work after the caller has been answered.
//!
//! If a tier fails too, the [`FallbackError`] names it and keeps the original error
//! as its `source()`.
//!
//! # Example
//!
//! ```
//! use palisade_classify::Outcome;
//! use palisade_fallback::{Compensator, Fallback, Trigger};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let compensator = Compensator::new();
//! let queued = Arc::new(AtomicU32::new(0));
//! let q = queued.clone();
//!
//! let chain: Fallback<&'static str, String> = Fallback::builder()
//!     // A business rejection is the caller's answer, not a failure to hide.
//!     .source(Trigger::transient(), |_ctx, _failure| async {
//!         Err::<&'static str, _>("the backup is down too")
//!     })
//!     .named("backup")
//!     .compensate(Trigger::failures(), &compensator, move |_detached, _failure| {
//!         let q = q.clone();
//!         async move { q.fetch_add(1, Ordering::Relaxed); } // record it for a later retry
//!     })
//!     .value(Trigger::failures(), "accepted, will be processed")
//!     .build();
//!
//! let answer = chain.recover(&(), Err("timed out".into()), Outcome::transient()).await;
//! assert_eq!(answer.unwrap(), "accepted, will be processed");
//!
//! compensator.shutdown().await;
//! assert_eq!(queued.load(Ordering::Relaxed), 1);
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

mod chain;
mod compensate;
mod error;
mod trigger;

pub use chain::{Failure, Fallback, FallbackBuilder};
pub use compensate::{
    CompensationRefused, Compensator, CompensatorSnapshot, DEFAULT_COMPENSATION_CAPACITY, Detach,
};
pub use error::{BoxError, ConfigError, FallbackError};
pub use trigger::Trigger;
