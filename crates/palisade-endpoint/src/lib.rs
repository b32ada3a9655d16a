//! Per-endpoint resilience: a dependency is several endpoints, and the failures
//! that hurt most are partial.
//!
//! - [`Coalesce`]: request coalescing ("singleflight"). Concurrent calls for one
//!   key share one in-flight call and its result, so a hot key that expires costs
//!   one call to the dependency, not a thousand.
//!
//! # Example
//!
//! ```
//! use palisade_context::Context;
//! use palisade_endpoint::Coalesce;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let coalesce: Coalesce<String, String, std::io::Error> = Coalesce::new();
//! let ctx = Context::background();
//! let value = coalesce
//!     .call(&ctx, "user:1".to_owned(), |_ctx| async { Ok("Ada".to_owned()) })
//!     .await
//!     .unwrap();
//! assert_eq!(value, "Ada");
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

mod balance;
mod coalesce;
mod config;
pub mod event;
mod outlier;
mod sync;

pub use balance::{
    Balance, BalanceBuilder, BalanceError, Change, ErrorIsFailure, ResponseFuture, Static, Tried, TriedOf,
};
pub use coalesce::{Call, Coalesce, CoalesceError, DEFAULT_MAX_KEYS};
pub use config::OutlierConfig;
pub use event::{EjectReason, Event};
pub use outlier::{EndpointHealth, EndpointState, Outliers, OutliersBuilder};
pub use palisade_clock::ConfigError;

/// Hooks that break the strategies on purpose, for the loom models only.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::sync::broken::{Bug, set};
}
