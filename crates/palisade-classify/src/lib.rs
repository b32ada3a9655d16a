//! The outcome taxonomy every Palisade strategy speaks.
//!
//! Retry, circuit breaker, limits and fallback must agree on what a failure is. This
//! crate is that agreement: every attempt ends in one [`Outcome`], decided by a
//! [`Classify`] from the attempt's whole `Result` (an `Ok` HTTP 503 is still a
//! failure):
//!
//! - **Success**.
//! - **Transient** failure: retrying may help (timeouts, connection resets, 429,
//!   502–504); may carry a retry-after hint and whether the request was delivered.
//! - **Permanent** failure: retrying will not help (500, a panic); counts against
//!   health.
//! - **Ignored**: the caller's fault or a business rejection (400, 404) and calls the
//!   caller cancelled; neither retried nor counted.
//! - **Rejected** by a strategy ([`Rejection`]: which [`Strategy`], and when to try
//!   again).
//!
//! It also holds the ready classifiers ([`classify_io_error`], [`classify_status`],
//! [`HttpStatus`] and, with the `http` feature, `Retry-After` parsing), the retry
//! safety rule ([`retry_allowed`]), [`Enriched`] errors and panic capture
//! ([`catch_panic`]).
//!
//! # Example
//!
//! ```
//! use palisade_classify::{AnyErrorIsTransient, Classify, ClassifyExt, Outcome};
//!
//! #[derive(Debug)]
//! enum ApiError { NotFound, Unavailable }
//!
//! let classifier = AnyErrorIsTransient.ignore_err(|e: &ApiError| matches!(e, ApiError::NotFound));
//!
//! assert_eq!(classifier.classify(&Ok::<u32, ApiError>(1)), Outcome::Success);
//! assert_eq!(classifier.classify(&Err::<u32, _>(ApiError::NotFound)), Outcome::Ignored);
//! assert!(classifier.classify(&Err::<u32, _>(ApiError::Unavailable)).is_retryable());
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod classify;
mod enrich;
mod io;
mod outcome;
mod panic;
#[cfg(feature = "http")]
mod retry_after;
mod status;

pub use classify::{
    AnyErrorIsTransient, ByError, Classify, ClassifyError, ClassifyExt, MapOutcome, OnErr, OnOk,
    Override, ResultPredicate,
};
pub use enrich::{Enriched, ResultExt};
pub use io::{classify_io_error, classify_io_kind};
pub use outcome::{
    Delivery, Idempotency, Outcome, OutcomeKind, Rejection, Strategy, Transient, retry_allowed,
};
pub use panic::{CatchPanic, PanicLocation, Panicked, catch_panic, catch_panic_sync, install_hook};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use retry_after::{RetryAfterError, parse_retry_after, parse_retry_after_at};
pub use status::{DEFAULT_MAX_RETRY_AFTER, HttpResponse, HttpStatus, classify_status};

/// A boxed error, `Send + Sync + 'static`: what a fallback tier, a probe or an
/// adapter may fail with. The one definition of the workspace; `palisade::BoxError`
/// and `palisade_fallback::BoxError` are this type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
