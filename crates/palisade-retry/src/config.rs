//! The serde configuration of a retry policy.

use palisade_backoff::BackoffConfig;
use palisade_classify::Idempotency;
use serde::Deserialize;

use crate::{BudgetConfig, ConfigError, HedgingConfig, Nested, RetryPolicy};

/// A retry policy as configuration (serde): the schedule, an optional budget, an
/// optional hedging, and the safety settings. Unknown fields are errors. Durations
/// are written in the [duration grammar](palisade_clock::duration#the-grammar) of
/// every Palisade configuration (`"250ms"`, `"1.5s"`, `"1m30s"`, or a bare integer of
/// milliseconds).
///
/// ```
/// use palisade_retry::RetryConfig;
///
/// let config: RetryConfig = toml::from_str(r#"
///     idempotent = true
///     [backoff]
///     kind = "exponential"
///     initial = "50ms"
///     max_attempts = 4
///     [budget]
///     retry_ratio = 0.1
///     [hedging]
///     delay = "30ms"
/// "#)?;
/// let policy = config.build()?;
/// assert_eq!(policy.backoff().max_attempts(), 4);
///
/// let bad: RetryConfig = toml::from_str("[backoff]\nfactor = 0.5")?;
/// assert_eq!(bad.build().unwrap_err().field(), "backoff.factor");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RetryConfig {
    /// The delay schedule (default: [`palisade_backoff::Backoff::default`]).
    pub backoff: BackoffConfig,
    /// A retry budget of its own for this policy (default none). To share one
    /// budget among policies, build it once and pass it to each builder.
    pub budget: Option<BudgetConfig>,
    /// Hedging (default none).
    pub hedging: Option<HedgingConfig>,
    /// Whether the operation is idempotent (default true).
    pub idempotent: Option<bool>,
    /// Whether to retry a non-idempotent operation that may have reached the
    /// server (default false).
    pub allow_non_idempotent: Option<bool>,
    /// What to do under an outer retry (default [`Nested::SingleAttempt`]).
    pub nested: Option<Nested>,
}

impl RetryConfig {
    /// Validates and builds a policy on the default clock.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (prefixed `backoff.`,
    /// `budget.`, `hedging.`).
    pub fn build(&self) -> Result<RetryPolicy, ConfigError> {
        let mut b =
            RetryPolicy::builder().backoff(self.backoff.build().map_err(|e| e.within("backoff"))?);
        if let Some(budget) = &self.budget {
            b = b.budget(budget.build()?);
        }
        if let Some(h) = &self.hedging {
            b = b.hedging(h.build()?);
        }
        if self.idempotent == Some(false) {
            b = b.idempotency(Idempotency::NonIdempotent);
        }
        if let Some(allow) = self.allow_non_idempotent {
            b = b.allow_non_idempotent(allow);
        }
        if let Some(nested) = self.nested {
            b = b.nested(nested);
        }
        b.build()
    }
}

impl TryFrom<&RetryConfig> for RetryPolicy {
    type Error = ConfigError;

    fn try_from(config: &RetryConfig) -> Result<Self, ConfigError> {
        config.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Forms that other sections accepted before all of them shared one grammar.
    #[test]
    fn every_duration_form_of_the_workspace() {
        let c: RetryConfig = toml::from_str(
            r#"
            [backoff]
            initial = 250
            max_delay = "2min"
            max_elapsed = "1m30s"
            [budget]
            window = "1.5s"
            [hedging]
            percentile = 95.0
            fallback = "1m30s"
            "#,
        )
        .unwrap();
        assert_eq!(c.backoff.initial, Some(Duration::from_millis(250)));
        assert_eq!(c.backoff.max_delay, Some(Duration::from_secs(120)));
        assert_eq!(c.backoff.max_elapsed, Some(Duration::from_secs(90)));
        let budget = c.budget.as_ref().unwrap();
        assert_eq!(budget.window, Some(Duration::from_millis(1500)));
        let hedging = c.hedging.as_ref().unwrap();
        assert_eq!(hedging.fallback, Some(Duration::from_secs(90)));
        c.build().unwrap();

        let c: RetryConfig = toml::from_str("[hedging]\ndelay = 250").unwrap();
        assert_eq!(c.hedging.unwrap().delay, Some(Duration::from_millis(250)));
        let c: RetryConfig = toml::from_str("[budget]\nwindow = \"2min\"").unwrap();
        assert_eq!(c.budget.unwrap().window, Some(Duration::from_secs(120)));
        let err = toml::from_str::<RetryConfig>("[hedging]\ndelay = \"5 sec\"").unwrap_err();
        assert!(err.to_string().contains("unknown unit \"sec\""), "{err}");
    }
}
