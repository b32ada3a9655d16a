//! Per-endpoint resilience: a dependency is several endpoints (replicas, shards,
//! regions), and the failures that hurt most are partial. One bad replica of five
//! fails a fifth of the calls, below any breaker threshold for the dependency as a
//! whole, so every caller keeps hitting it; and a hot key that expires turns a
//! thousand concurrent requests into a thousand calls.
//!
//! - [`Outliers`]: outlier detection. Per-endpoint statistics over
//!   [`palisade_window`] windows (failures in a row, failure rate, median latency
//!   against the others'); an outlier is ejected for a growing time, never more
//!   than a configured share of endpoints at once (a dependency-wide outage is the
//!   breaker's job), and readmitted on probation. Configured by [`OutlierConfig`].
//! - [`Balance`]: endpoint selection, a tower `Service` over a static list or a
//!   discovery [`Stream`](futures_core::Stream) of [`Change`]s. Power of two
//!   choices on in-flight load among the endpoints not ejected; the attempts of one
//!   request (retries, hedges) share a [`Tried`] set and go to endpoints not yet
//!   tried.
//! - [`Coalesce`]: request coalescing ("singleflight"). Concurrent calls for one
//!   key share one in-flight call and its result.
//!
//! Everything reports through [`event`]: a callback, tracing events (target
//! `palisade::endpoint`) and, with the `metrics` feature, counters and gauges.
//!
//! # Example
//!
//! Three replicas, one of which is down: after three failures in a row it is
//! ejected, and the calls go to the other two.
//!
//! ```
//! use palisade_clock::ManualClock;
//! use palisade_endpoint::{Balance, EndpointState, OutlierConfig, Outliers};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = OutlierConfig::default().with_consecutive_failures(Some(3));
//! let outliers = Outliers::builder(config)
//!     .clock(ManualClock::new())
//!     .name("users")
//!     .build()
//!     .unwrap();
//! let replica = |name: &'static str| {
//!     service_fn(move |_req: ()| async move {
//!         if name == "down" { Err("connection refused") } else { Ok(name) }
//!     })
//! };
//! let mut users = Balance::builder(outliers)
//!     .endpoints(["a", "b", "down"].map(|n| (n, replica(n))));
//!
//! let mut answers = Vec::new();
//! for _ in 0..30 {
//!     answers.push(users.ready().await.unwrap().call(()).await.ok());
//! }
//! let failed = answers.iter().filter(|a| a.is_none()).count();
//! assert_eq!(failed, 3, "three failures, then the replica is out");
//! assert!(matches!(users.health(&"down").unwrap().state(), EndpointState::Ejected { .. }));
//! # }
//! ```
//!
//! Coalescing on its own:
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
//!
//! # Where they sit in a pipeline
//!
//! Coalescing goes outside the whole pipeline (before the fallback): one flight
//! passes once through retries, breaker and limits, and its callers share the
//! outcome. The balancer is the call itself, inside the attempt timeout: each
//! attempt of a pipeline's retries or hedges is one balanced call, and a [`Tried`]
//! set made once per execution (before `Pipeline::execute`) and put in every
//! attempt's request keeps the attempts on different endpoints.
//!
//! # Cost
//!
//! A balanced call over healthy endpoints takes no lock and allocates nothing of
//! the balancer's own (the endpoint service's clone and future are its own): a
//! clock reading, two random picks, their state and in-flight count, and the
//! outcome recorded in the endpoint's window. A coalesced call for a new key takes
//! the map's lock twice (insert, remove) and allocates the shared flight. Figures:
//! `docs/performance.md`, area `endpoint`.
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
    Balance, BalanceBuilder, BalanceError, Change, ErrorIsFailure, ResponseFuture, Static, Tried,
    TriedOf,
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
