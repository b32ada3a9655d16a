//! Palisade keeps an async service answering while what it depends on is slow,
//! failing or overloaded.
//!
//! This facade is the one dependency most users add. It holds the [`Pipeline`]
//! that composes every strategy around a call to a dependency, in a fixed order,
//! with one [`Error`] type; and each concept's crate, re-exported as a module behind
//! a feature of the same name:
//!
//! | module | feature | what it holds |
//! | --- | --- | --- |
//! | [`clock`] | `clock` (default) | the only source of time; virtual time in tests |
//! | [`classify`] | `classify` (default) | the outcome taxonomy every strategy speaks |
//! | [`context`] | `context` (default) | cancellation, deadlines and values carried by every call |
//! | [`fallback`] | `fallback` (default) | tiered fallback chains |
//! | [`backoff`] | `backoff` (default) | delay schedules for retries |
//! | [`window`] | `window` (default) | sliding-window counters |
//! | [`retry`] | `retry` (default) | the retry executor, retry budgets, hedging |
//! | [`breaker`] | `breaker` (default) | the circuit breaker |
//! | [`limit`] | `limit` (default) | bulkhead and rate limiter |
//! | `endpoint` | `endpoint` | request coalescing, outlier detection, endpoint selection (palisade-endpoint) |
//!
//! And modules of the facade's own, behind features that are off by default:
//!
//! | module | feature | what it holds |
//! | --- | --- | --- |
//! | `tower` | `tower` | the pipeline and each strategy as tower layers |
//! | `edge` | `http` and `tower` | a request's context from its deadline and trace headers, and those headers written on leaving requests; with `opentelemetry`, the ids of the exported spans |
//! | `config` | `config` | named pipelines from TOML or JSON, hot reload |
//! | `metrics` | `metrics` | counters and histograms through the `metrics` facade |
//! | `chaos` | `chaos` | injected latency, errors and outcomes |
//! | `health` | `health` (endpoints: `health-http`, gRPC: `health-grpc`) | startup, liveness and readiness from what the pipelines count (palisade-health) |
//! | `testing` | `testing` | the test kit: no task left alive, drop at every poll, leak checks of every primitive |
//! | `reqwest` | `reqwest` (middleware: `reqwest-middleware`) | reqwest's responses and errors classified, requests sent through a pipeline with the attempt's deadline and trace |
//! | `tonic` | `tonic` | gRPC statuses classified, rejections as gRPC statuses, client and server layers |
//! | `axum` | `axum` | palisade's errors as axum responses (503 with `Retry-After`, 504, 500) |
//! | `admission` | `admission` | a tower server layer: adaptive limit, criticality classes, retry-aware shedding, deadline-aware CoDel queue |
//!
//! # Example
//!
#![cfg_attr(feature = "classify", doc = "```")]
#![cfg_attr(not(feature = "classify"), doc = "```ignore")]
//! use palisade::{Context, Pipeline};
//! use palisade::classify::HttpStatus;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One pipeline per dependency, shared by every call to it.
//! let users = Pipeline::builder("users-api")
//!     .classifier(HttpStatus::new()) // an `Ok` 503 is still a failure
//!     .attempt_timeout(Duration::from_millis(300))
//!     .total_timeout(Duration::from_secs(2))
//!     .build()?;
//!
//! let ctx = Context::background();
//! let status = users
//!     .execute(&ctx, |_ctx| async { Ok::<u16, std::io::Error>(200) })
//!     .await?;
//! assert_eq!(status, 200);
//! # Ok(())
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

#[cfg(feature = "admission")]
#[cfg_attr(docsrs, doc(cfg(feature = "admission")))]
pub mod admission;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "chaos")]
#[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
pub mod chaos;
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub mod config;
#[cfg(all(feature = "http", feature = "tower"))]
#[cfg_attr(docsrs, doc(cfg(all(feature = "http", feature = "tower"))))]
pub mod edge;
mod error;
#[cfg(feature = "health")]
#[cfg_attr(docsrs, doc(cfg(feature = "health")))]
pub mod health;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
/// Where a caught panic happened: install the hook once, and every
/// [`Panicked`](panic::Panicked) palisade catches carries its location (and a
/// backtrace when `RUST_BACKTRACE` asks for one). The hook already installed
/// still runs.
pub mod panic {
    pub use palisade_classify::{PanicLocation, Panicked, install_hook};
}
mod pipeline;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
mod tally;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod timer;

/// The old home of the pipeline's attempt timer, public by mistake.
///
/// The one timeout function of Palisade is [`palisade_context::timeout`]
/// (`palisade::context::timeout`): it honours the call's Context, its error says
/// whether the timeout or the Context ended the call, and like this one it arms no
/// timer for a future that is ready on its first poll.
#[deprecated(
    since = "0.1.0",
    note = "use `palisade::context::timeout`, the one timeout function"
)]
pub mod timeout {
    pub use crate::timer::{Elapsed, Timeout, timeout};
}
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use error::{Attempt, BoxError, ConfigError, Error, Report, TimeoutKind};
pub use palisade_context::Context;
pub use pipeline::{MAX_TIMEOUT, Pipeline, PipelineBuilder, PipelineSnapshot, WithFallback};
pub use tally::CallCounts;

#[cfg(feature = "clock")]
#[cfg_attr(docsrs, doc(cfg(feature = "clock")))]
#[doc(inline)]
pub use palisade_clock as clock;

#[cfg(feature = "classify")]
#[cfg_attr(docsrs, doc(cfg(feature = "classify")))]
#[doc(inline)]
pub use palisade_classify as classify;

#[cfg(feature = "context")]
#[cfg_attr(docsrs, doc(cfg(feature = "context")))]
#[doc(inline)]
pub use palisade_context as context;

#[cfg(feature = "fallback")]
#[cfg_attr(docsrs, doc(cfg(feature = "fallback")))]
#[doc(inline)]
pub use palisade_fallback as fallback;

#[cfg(feature = "backoff")]
#[cfg_attr(docsrs, doc(cfg(feature = "backoff")))]
#[doc(inline)]
pub use palisade_backoff as backoff;

#[cfg(feature = "window")]
#[cfg_attr(docsrs, doc(cfg(feature = "window")))]
#[doc(inline)]
pub use palisade_window as window;

#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
#[doc(inline)]
pub use palisade_retry as retry;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
#[doc(inline)]
pub use palisade_breaker as breaker;

#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
#[doc(inline)]
pub use palisade_limit as limit;

#[cfg(feature = "endpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "endpoint")))]
#[doc(inline)]
pub use palisade_endpoint as endpoint;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use palisade_limit_redis as redis;
