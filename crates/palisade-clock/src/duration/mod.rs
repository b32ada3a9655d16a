//! Durations as configuration text: the one grammar of every Palisade configuration.
//!
//! [`parse`] reads a duration, [`format`](fn@format) writes one, and (with this crate's `serde`
//! feature) [`serde`] and [`serde_opt`] plug both into `#[serde(with = "…")]`. Every
//! duration of every Palisade configuration (backoff, retry, budget, hedging,
//! breaker, window, bulkhead, rate limiter, adaptive limit, throttle and pipeline
//! sections) goes through them, so a value that works in one section works in all.
//!
//! # The grammar
//!
//! A duration is one or more components, each a non-negative decimal number and a
//! unit:
//!
//! | unit | written |
//! | --- | --- |
//! | nanosecond | `ns` |
//! | microsecond | `us`, `µs` |
//! | millisecond | `ms` |
//! | second | `s` |
//! | minute | `m`, `min` |
//! | hour | `h` |
//!
//! - A number is decimal digits with an optional fraction: `250`, `1.5`, `0.25`,
//!   `.5`, `5.`. No sign, no exponent.
//! - Components go from the largest unit to the smallest, each unit at most once,
//!   and add up: `1m30s` is 90 s, `1h2m3.5s` is 3 723.5 s.
//! - Whitespace may surround the text and separate a number from its unit and one
//!   component from the next: `" 2 s "`, `"1m 30s"`.
//! - Units are spelled exactly as in the table, in lower case: `sec`, `S`, `hr` and
//!   `d` are unknown units.
//!
//! The arithmetic is exact decimal, never floating point. A fraction finer than a
//! nanosecond is rounded to the nearest nanosecond, halves up: `"0.5ns"` is 1 ns,
//! `"1.0000000004s"` is 1 s. In a compound form each component is rounded on its
//! own.
//!
//! Refused, with a [`DurationParseError`] that quotes the value, says what is wrong
//! and lists the accepted forms: empty text, a negative number (`"-1s"`), a number
//! without a unit (`"250"` as text), an unknown unit (`"5 sec"`), anything else that
//! is not a number and a unit (`"1e3s"`, `"1.2.3s"`), units out of order or repeated
//! (`"30s1m"`), and a duration longer than [`MAX`] (`u64::MAX` nanoseconds, about
//! 584 years). No input panics.
//!
//! ## In serde configurations
//!
//! [`serde`] and [`serde_opt`] read, besides text in the grammar above:
//!
//! - **a bare integer, as milliseconds**: `max_wait = 250` is 250 ms. A negative or
//!   fractional bare number is refused (write `"1.5ms"`).
//! - a table `{ secs = 2, nanos = 0 }`, the form serde gives
//!   [`std::time::Duration`] on its own.
//!
//! They write the text of [`format`](fn@format).
//!
//! # Writing
//!
//! [`format`](fn@format) writes the duration in the largest of `s`, `ms`, `us` and `ns` that
//! holds it as a whole number: `"90s"`, `"1500ms"`, `"7ns"`, `"0s"`. For every
//! duration up to [`MAX`], `parse(&format(d)) == Ok(d)`.
//!
//! # Example
//!
//! ```
//! use palisade_clock::duration;
//! use std::time::Duration;
//!
//! assert_eq!(duration::parse("250ms")?, Duration::from_millis(250));
//! assert_eq!(duration::parse("1.5s")?, Duration::from_millis(1500));
//! assert_eq!(duration::parse("2min")?, Duration::from_secs(120));
//! assert_eq!(duration::parse("1m30s")?, Duration::from_secs(90));
//! assert_eq!(duration::parse(" 1h 2m 3.5s ")?, Duration::from_millis(3_723_500));
//! assert_eq!(duration::format(Duration::from_secs(90)), "90s");
//!
//! let err = duration::parse("5 sec").unwrap_err();
//! assert!(err.is_unknown_unit());
//! assert!(err.to_string().starts_with(r#"invalid duration "5 sec": unknown unit "sec""#));
//! # Ok::<(), duration::DurationParseError>(())
//! ```
//!
//! In a configuration struct:
//!
//! ```
//! # #[cfg(feature = "serde")] {
//! use palisade_clock::duration;
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     #[serde(with = "duration::serde")]
//!     timeout: Duration,
//!     #[serde(with = "duration::serde_opt", default)]
//!     max_wait: Option<Duration>,
//! }
//!
//! let config: Config = toml::from_str("timeout = \"1m30s\"\nmax_wait = 250")?;
//! assert_eq!(config.timeout, Duration::from_secs(90));
//! assert_eq!(config.max_wait, Some(Duration::from_millis(250)));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// Without the `serde` feature the serde modules are not there to link to.
#![cfg_attr(
    feature = "serde",
    doc = "[`serde`]: self::serde\n[`serde_opt`]: self::serde_opt"
)]
#![cfg_attr(
    not(feature = "serde"),
    doc = "[`serde`]: #in-serde-configurations\n[`serde_opt`]: #in-serde-configurations"
)]

use std::time::Duration;

mod error;
mod format;
mod parse;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod serde_opt;

pub use error::DurationParseError;
pub use format::format;
pub use parse::parse;

/// The longest duration [`parse`] and the serde modules accept: `u64::MAX`
/// nanoseconds, about 584 years (the span of a [`Timestamp`](crate::Timestamp)).
pub const MAX: Duration = Duration::from_nanos(u64::MAX);
