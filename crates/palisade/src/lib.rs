//! Palisade keeps an async service answering while what it depends on is slow,
//! failing or overloaded.
//!
//! This facade is the one dependency most users add. Each concept lives in a focused
//! crate, re-exported here as a module behind a feature of the same name:
//!
//! | module | feature | what it holds |
//! | --- | --- | --- |
//! | [`clock`] | `clock` (default) | the only source of time; virtual time in tests |
//! | [`classify`] | `classify` (default) | the outcome taxonomy every strategy speaks |
//!
//! # Example
//!
//! ```
//! use palisade::classify::{Classify, HttpStatus, Outcome};
//!
//! // An `Ok` response can still be a failure: a 503 is transient.
//! let classifier = HttpStatus::new();
//! let result: Result<u16, std::io::Error> = Ok(503);
//! assert!(matches!(classifier.classify(&result), Outcome::Transient(_)));
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "clock")]
#[cfg_attr(docsrs, doc(cfg(feature = "clock")))]
#[doc(inline)]
pub use palisade_clock as clock;

#[cfg(feature = "classify")]
#[cfg_attr(docsrs, doc(cfg(feature = "classify")))]
#[doc(inline)]
pub use palisade_classify as classify;
