//! The one configuration error of every Palisade crate.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A configuration value refused: which field, the value given and what is allowed.
///
/// Every crate of Palisade returns this one type from its `build`, `validate` and
/// configuration loaders, so an error reads the same wherever it comes from. The
/// field is a dotted path: a crate names its own fields (`factor`,
/// `half_open.probes`), and a configuration that nests it places them under its
/// own with [`within`](Self::within) (`pipelines.billing.retry.backoff.factor`).
///
/// ```
/// use palisade_clock::ConfigError;
///
/// let e = ConfigError::new("max_attempts", 0, "1..=100").within("retry");
/// assert_eq!(e.field(), "retry.max_attempts");
/// assert_eq!(e.value(), Some("0"));
/// assert_eq!(e.allowed(), "1..=100");
/// assert_eq!(e.to_string(), "`retry.max_attempts` is 0, allowed 1..=100");
///
/// let e = ConfigError::without_value("pipelines", "at least one pipeline");
/// assert_eq!(e.to_string(), "`pipelines`: at least one pipeline");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    field: Cow<'static, str>,
    value: Option<String>,
    allowed: Cow<'static, str>,
}

impl ConfigError {
    /// `field` was given `value` (shown with its `Debug` form: numbers as written,
    /// strings quoted; a duration goes through [`duration`](Self::duration)
    /// instead); `allowed` says what it may be (`"1..=100"`, `"a finite number
    /// above 1"`).
    pub fn new(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Debug,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::shown(field, format_args!("{value:?}"), allowed)
    }

    /// `field` was given `value`, shown with its `Display` form: for a value already
    /// written out (`"worse 0, better 2"`), or one whose `Debug` form is not how a
    /// configuration writes it.
    pub fn shown(
        field: impl Into<Cow<'static, str>>,
        value: impl fmt::Display,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        ConfigError {
            field: field.into(),
            value: Some(value.to_string()),
            allowed: allowed.into(),
        }
    }

    /// `field` was given the duration `value`, shown in the
    /// [duration grammar](crate::duration) of the configuration (`"90s"`, `"1.5s"`).
    pub fn duration(
        field: impl Into<Cow<'static, str>>,
        value: Duration,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::shown(field, crate::duration::format(value), allowed)
    }

    /// A refusal with no single value to show: a missing field, a combination of
    /// fields, a document that does not parse. `allowed` says what was expected.
    pub fn without_value(
        field: impl Into<Cow<'static, str>>,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        ConfigError {
            field: field.into(),
            value: None,
            allowed: allowed.into(),
        }
    }

    /// The same refusal, its field placed under `prefix`: `"retry"` and
    /// `"max_attempts"` make `"retry.max_attempts"`. An empty prefix changes
    /// nothing; an empty field becomes the prefix.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        if prefix.is_empty() {
            return self;
        }
        self.field = if self.field.is_empty() {
            Cow::Owned(prefix.to_owned())
        } else {
            Cow::Owned(format!("{prefix}.{}", self.field))
        };
        self
    }

    /// The field at fault, as a dotted path (`half_open.probes`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The value given, in its `Debug` form; `None` when the refusal is not of one
    /// value.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }

    /// What the field allows, in words.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }

    /// What the field allows: [`allowed`](Self::allowed), under the name the
    /// facade's and the breaker's errors used.
    #[deprecated(
        since = "0.2.0",
        note = "use `allowed()`, `value()` or the `Display` form"
    )]
    pub fn message(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "`{}` is {value}, allowed {}", self.field, self.allowed),
            None => write!(f, "`{}`: {}", self.field, self.allowed),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_builds_the_dotted_path() {
        let e = ConfigError::new("probes", 0u32, "1..=1000")
            .within("half_open")
            .within("breaker")
            .within("");
        assert_eq!(e.field(), "breaker.half_open.probes");
        let e = ConfigError::without_value("", "a table").within("pipelines");
        assert_eq!(e.field(), "pipelines");
    }

    #[test]
    fn values_show_in_their_debug_form() {
        let e = ConfigError::new("initial", Duration::from_millis(1500), "at most 1h");
        assert_eq!(e.value(), Some("1.5s"));
        let e = ConfigError::shown("name", "db", "unused");
        assert_eq!(e.value(), Some("db"));
        let e = ConfigError::duration("initial", Duration::from_secs(90), "at most 1m");
        assert_eq!(e.to_string(), "`initial` is 90s, allowed at most 1m");
        let e = ConfigError::new("name", "", "a name that is not blank");
        assert_eq!(
            e.to_string(),
            "`name` is \"\", allowed a name that is not blank"
        );
    }
}
