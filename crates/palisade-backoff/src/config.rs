use std::time::Duration;

use serde::Deserialize;

use crate::{Backoff, BackoffBuilder, ConfigError, Jitter};

/// The curve of a [`BackoffConfig`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BackoffKind {
    /// [`Backoff::constant`].
    Constant,
    /// [`Backoff::linear`].
    Linear,
    /// [`Backoff::exponential`]; the default, the shape that relieves an overloaded
    /// dependency fastest.
    #[default]
    Exponential,
    /// [`Backoff::fibonacci`].
    Fibonacci,
    /// [`Backoff::decorrelated`].
    Decorrelated,
}

/// A backoff schedule as configuration (serde), validated by
/// [`build`](BackoffConfig::build). Every field is optional; unknown fields are
/// errors, so a typo does not pass silently.
///
/// Durations are written in the [duration grammar](palisade_clock::duration#the-grammar)
/// of every Palisade configuration: `"250ms"`, `"1.5s"`, `"2min"`, `"1m30s"`, or a
/// bare integer of milliseconds.
///
/// ```
/// use palisade_backoff::{BackoffConfig, Jitter};
/// use std::time::Duration;
///
/// let config: BackoffConfig = toml::from_str(r#"
///     kind = "exponential"
///     initial = "50ms"
///     factor = 3.0
///     max_delay = "2s"
///     jitter = { proportional = 0.1 }
///     max_attempts = 5
/// "#)?;
/// let backoff = config.build()?;
/// assert_eq!(backoff.max_delay(), Duration::from_secs(2));
/// assert_eq!(backoff.jitter(), Jitter::Proportional(0.1));
///
/// let bad: BackoffConfig = toml::from_str("factor = 0.5")?;
/// assert_eq!(bad.build().unwrap_err().field(), "factor");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// The curve (default exponential).
    pub kind: BackoffKind,
    /// The first delay; the delay of a constant schedule; the base of a decorrelated
    /// one (default [`DEFAULT_INITIAL`](crate::DEFAULT_INITIAL)). Zero only for a
    /// constant schedule (retries at once) or a linear one with a `step`.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub initial: Option<Duration>,
    /// The growth per delay of a linear schedule (default: `initial`).
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub step: Option<Duration>,
    /// The growth factor of an exponential schedule (default
    /// [`DEFAULT_FACTOR`](crate::DEFAULT_FACTOR)).
    pub factor: Option<f64>,
    /// The cap on every delay (default as [`BackoffBuilder::max_delay`]).
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub max_delay: Option<Duration>,
    /// The jitter (default [`Jitter::Full`], none for decorrelated).
    pub jitter: Option<Jitter>,
    /// The number of attempts, the first included (default
    /// [`DEFAULT_MAX_ATTEMPTS`](crate::DEFAULT_MAX_ATTEMPTS)).
    pub max_attempts: Option<u32>,
    /// The cap on the sum of the delays (default none).
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub max_elapsed: Option<Duration>,
}

impl BackoffConfig {
    /// Validates and builds the schedule.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first invalid field (see
    /// [`BackoffBuilder::build`]); also a `step` or `factor` given for a curve that
    /// has none.
    pub fn build(&self) -> Result<Backoff, ConfigError> {
        self.builder()?.build()
    }

    /// The builder this configuration describes, to adjust before building.
    ///
    /// # Errors
    ///
    /// A `step` or `factor` given for a curve that has none.
    pub fn builder(&self) -> Result<BackoffBuilder, ConfigError> {
        let initial = self.initial.unwrap_or(crate::DEFAULT_INITIAL);
        if self.step.is_some() && self.kind != BackoffKind::Linear {
            return Err(ConfigError::duration(
                "step",
                self.step.unwrap_or_default(),
                "only on a linear schedule",
            ));
        }
        let mut builder = match self.kind {
            BackoffKind::Constant => Backoff::constant(initial),
            BackoffKind::Linear => Backoff::linear(initial, self.step.unwrap_or(initial)),
            BackoffKind::Exponential => Backoff::exponential(initial),
            BackoffKind::Fibonacci => Backoff::fibonacci(initial),
            BackoffKind::Decorrelated => Backoff::decorrelated(initial),
        };
        if let Some(factor) = self.factor {
            builder = builder.factor(factor);
        }
        if let Some(max_delay) = self.max_delay {
            builder = builder.max_delay(max_delay);
        }
        if let Some(jitter) = self.jitter {
            builder = builder.jitter(jitter);
        }
        if let Some(max_attempts) = self.max_attempts {
            builder = builder.max_attempts(max_attempts);
        }
        if let Some(max_elapsed) = self.max_elapsed {
            builder = builder.max_elapsed(max_elapsed);
        }
        Ok(builder)
    }
}

impl TryFrom<BackoffConfig> for Backoff {
    type Error = ConfigError;

    fn try_from(config: BackoffConfig) -> Result<Self, ConfigError> {
        config.build()
    }
}

impl TryFrom<&BackoffConfig> for Backoff {
    type Error = ConfigError;

    fn try_from(config: &BackoffConfig) -> Result<Self, ConfigError> {
        config.build()
    }
}

/// Parses a duration; the same as [`palisade_clock::duration::parse`], whose
/// grammar every Palisade configuration shares.
///
/// # Errors
///
/// A [`DurationParseError`](palisade_clock::duration::DurationParseError) that names
/// what is wrong and the accepted forms.
#[deprecated(
    note = "use `palisade_clock::duration::parse`, the grammar of every Palisade configuration"
)]
pub fn parse_duration(
    text: &str,
) -> Result<Duration, palisade_clock::duration::DurationParseError> {
    palisade_clock::duration::parse(text)
}

/// A duration that [`parse_duration`] cannot read; now
/// [`palisade_clock::duration::DurationParseError`].
#[deprecated(note = "use `palisade_clock::duration::DurationParseError`")]
pub type DurationParseError = palisade_clock::duration::DurationParseError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated)]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("3us"), Duration::from_micros(3));
        assert_eq!(ok("3µs"), Duration::from_micros(3));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok(" 2 s "), Duration::from_secs(2));
        assert_eq!(ok("0.25s"), Duration::from_millis(250));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        for bad in [
            "",
            "5",
            "ms",
            "-1s",
            "1.2.3s",
            "1d",
            "nan s",
            "1e400s",
            "99999999999999999999h",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(
            parse_duration("x")
                .unwrap_err()
                .to_string()
                .contains("\"x\"")
        );
    }

    /// Forms that other sections accepted before all of them shared one grammar.
    #[test]
    fn every_duration_form_of_the_workspace() {
        let c: BackoffConfig = toml::from_str(
            "kind = \"linear\"\ninitial = \"1.5s\"\nstep = 250\nmax_delay = \"2min\"\nmax_elapsed = \"1m30s\"",
        )
        .unwrap();
        assert_eq!(c.initial, Some(Duration::from_millis(1500)));
        assert_eq!(c.step, Some(Duration::from_millis(250)));
        assert_eq!(c.max_delay, Some(Duration::from_secs(120)));
        assert_eq!(c.max_elapsed, Some(Duration::from_secs(90)));
        c.build().unwrap();
        let c: BackoffConfig =
            serde_json::from_str(r#"{"initial": 250, "max_delay": null}"#).unwrap();
        assert_eq!(c.initial, Some(Duration::from_millis(250)));
        assert_eq!(c.max_delay, None);
        let err = toml::from_str::<BackoffConfig>("initial = -5").unwrap_err();
        assert!(
            err.to_string().contains("invalid duration -5: negative"),
            "{err}"
        );
    }

    #[test]
    fn json_and_toml() {
        let c: BackoffConfig = serde_json::from_str(
            r#"{"kind":"linear","initial":"10ms","step":"5ms","max_delay":"20ms","jitter":"none","max_attempts":5}"#,
        )
        .unwrap();
        let ms: Vec<u128> = c.build().unwrap().iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [10, 15, 20, 20]);

        let c: BackoffConfig =
            toml::from_str("kind = \"decorrelated\"\ninitial = \"1s\"\nmax_delay = \"1m\"")
                .unwrap();
        assert_eq!(Backoff::try_from(&c).unwrap().kind(), "decorrelated");
        assert_eq!(
            Backoff::try_from(BackoffConfig::default()),
            Ok(Backoff::default())
        );
    }

    #[test]
    fn bad_configuration_is_explained() {
        let err = serde_json::from_str::<BackoffConfig>(r#"{"factr": 2}"#).unwrap_err();
        assert!(err.to_string().contains("factr"), "{err}");
        let err = serde_json::from_str::<BackoffConfig>(r#"{"initial": "fast"}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid duration \"fast\""),
            "{err}"
        );
        let err = serde_json::from_str::<BackoffConfig>(r#"{"jitter": "sometimes"}"#).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");

        let build = |json: &str| {
            serde_json::from_str::<BackoffConfig>(json)
                .unwrap()
                .build()
                .unwrap_err()
        };
        assert_eq!(build(r#"{"kind":"constant","step":"1s"}"#).field(), "step");
        assert_eq!(
            build(r#"{"kind":"fibonacci","factor":2}"#).field(),
            "factor"
        );
        assert_eq!(build(r#"{"jitter":{"proportional":2}}"#).field(), "jitter");
        assert_eq!(build(r#"{"max_attempts":0}"#).field(), "max_attempts");
        assert_eq!(build(r#"{"initial":"0s"}"#).field(), "initial");
        assert_eq!(build(r#"{"kind":"linear","initial":"0s"}"#).field(), "step");
        assert_eq!(
            build(r#"{"initial":"1m"}"#).to_string(),
            "`initial` is 60s, allowed at most max_delay (10s)"
        );
    }
}
