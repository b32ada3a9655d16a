//! The configuration error: the one of every Palisade crate.

/// A backoff configuration that cannot be built: which field, the value given, and
/// what is allowed (the shape every Palisade crate shares).
///
/// ```
/// use palisade_backoff::Backoff;
/// use std::time::Duration;
///
/// let err = Backoff::exponential(Duration::from_millis(100))
///     .factor(0.5)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "factor");
/// assert_eq!(err.to_string(), "`factor` is 0.5, allowed a finite number ≥ 1.0");
/// ```
pub use palisade_clock::ConfigError;
