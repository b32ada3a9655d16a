use std::fmt;

/// A backoff configuration that cannot be built: which field, the value given, and
/// what is allowed.
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
/// assert_eq!(
///     err.to_string(),
///     "invalid backoff configuration: `factor` is 0.5; allowed: a finite number ≥ 1.0"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    allowed: String,
}

impl ConfigError {
    pub(crate) fn new(
        field: &'static str,
        value: impl fmt::Debug,
        allowed: impl Into<String>,
    ) -> Self {
        ConfigError {
            field,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }

    /// The name of the offending field, as in the serde configuration (`factor`,
    /// `max_delay`, …).
    pub fn field(&self) -> &str {
        self.field
    }

    /// The value that was given, formatted with `Debug`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the field allows.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid backoff configuration: `{}` is {}; allowed: {}",
            self.field, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}
