//! Window configuration and its validation.

use std::time::Duration;

use serde::Deserialize;

/// The largest [`CountConfig::size`]: a million outcomes (a megabyte of slots).
pub const MAX_SIZE: usize = 1_000_000;
/// The largest [`TimeConfig::buckets`].
pub const MAX_BUCKETS: usize = 1_000;
/// The narrowest [`TimeConfig::bucket_width`]: one microsecond.
pub const MIN_BUCKET_WIDTH: Duration = Duration::from_micros(1);
/// The widest [`TimeConfig::bucket_width`]: one hour.
pub const MAX_BUCKET_WIDTH: Duration = Duration::from_secs(3600);
/// The longest time window, `buckets × bucket_width`: one day.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// The largest slow-call threshold: one day.
pub const MAX_SLOW_CALL_THRESHOLD: Duration = Duration::from_secs(24 * 3600);

/// The configuration of a [`CountWindow`](crate::CountWindow): the last `size`
/// outcomes.
///
/// Deserializes from a table whose missing fields take their defaults; durations are
/// written in the [duration grammar](palisade_clock::duration#the-grammar) of every
/// Palisade configuration (`"250ms"`, `"1.5s"`, `"1m30s"`, or a bare integer of
/// milliseconds).
///
/// ```
/// use palisade_window::{CountConfig, CountWindow};
/// use std::time::Duration;
///
/// let config = CountConfig::new(50).with_slow_call_threshold(Some(Duration::from_millis(500)));
/// let window = CountWindow::new(config).unwrap();
/// assert_eq!(window.size(), 50);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct CountConfig {
    /// How many of the latest outcomes the window holds, from 1 to 1 000 000.
    ///
    /// Default **100**: a failure rate over 100 calls has a resolution of 1 %, and a
    /// dependency that starts failing is noticed within 100 calls.
    pub size: usize,
    /// Calls that took at least this long count as slow; `None` (the default) counts
    /// none as slow. At most one day.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub slow_call_threshold: Option<Duration>,
}

impl Default for CountConfig {
    fn default() -> Self {
        CountConfig {
            size: 100,
            slow_call_threshold: None,
        }
    }
}

impl CountConfig {
    /// A window of the latest `size` outcomes that counts no call as slow; set
    /// [`slow_call_threshold`](Self::slow_call_threshold) with
    /// [`with_slow_call_threshold`](Self::with_slow_call_threshold). Checked when
    /// the window is built.
    pub const fn new(size: usize) -> Self {
        CountConfig {
            size,
            slow_call_threshold: None,
        }
    }

    /// The same configuration, with calls of at least `threshold` counted as slow
    /// (`None`: none).
    #[must_use]
    pub const fn with_slow_call_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.slow_call_threshold = threshold;
        self
    }

    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_SIZE).contains(&self.size) {
            return Err(ConfigError::new("size", self.size, "from 1 to 1000000"));
        }
        validate_slow(self.slow_call_threshold)
    }
}

/// The configuration of a [`TimeWindow`](crate::TimeWindow): `buckets` buckets of
/// `bucket_width` each, so the window spans `buckets × bucket_width`.
///
/// Deserializes from a table whose missing fields take their defaults; durations are
/// written in the [duration grammar](palisade_clock::duration#the-grammar) of every
/// Palisade configuration (`"250ms"`, `"1.5s"`, `"1m30s"`, or a bare integer of
/// milliseconds).
///
/// ```
/// use palisade_window::TimeConfig;
/// use std::time::Duration;
///
/// let config: TimeConfig = serde_json::from_str(r#"{ "buckets": 20, "bucket_width": "500ms" }"#).unwrap();
/// assert_eq!(config.buckets, 20);
/// assert_eq!(config.bucket_width, Duration::from_millis(500));
/// assert_eq!(config.slow_call_threshold, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeConfig {
    /// How many buckets the window has, from 1 to 1 000.
    ///
    /// Default **10**: with the default width, a 10-second window that forgets the
    /// oldest second at a time (the rolling window Hystrix made standard).
    pub buckets: usize,
    /// How much time each bucket covers, from 1 µs to 1 h; `buckets × bucket_width`
    /// is at most one day.
    ///
    /// Default **1 s**: coarse enough that rotation costs nothing measurable, fine
    /// enough that a failure burst leaves the window within a second of its age.
    #[serde(with = "palisade_clock::duration::serde")]
    pub bucket_width: Duration,
    /// Calls that took at least this long count as slow; `None` (the default) counts
    /// none as slow. At most one day.
    #[serde(with = "palisade_clock::duration::serde_opt")]
    pub slow_call_threshold: Option<Duration>,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            buckets: 10,
            bucket_width: Duration::from_secs(1),
            slow_call_threshold: None,
        }
    }
}

impl TimeConfig {
    /// A window of `buckets` buckets of `bucket_width` each that counts no call as
    /// slow; set [`slow_call_threshold`](Self::slow_call_threshold) with
    /// [`with_slow_call_threshold`](Self::with_slow_call_threshold). Checked when
    /// the window is built.
    pub const fn new(buckets: usize, bucket_width: Duration) -> Self {
        TimeConfig {
            buckets,
            bucket_width,
            slow_call_threshold: None,
        }
    }

    /// The same configuration, with calls of at least `threshold` counted as slow
    /// (`None`: none).
    #[must_use]
    pub const fn with_slow_call_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.slow_call_threshold = threshold;
        self
    }

    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            return Err(ConfigError::new("buckets", self.buckets, "from 1 to 1000"));
        }
        if !(MIN_BUCKET_WIDTH..=MAX_BUCKET_WIDTH).contains(&self.bucket_width) {
            return Err(ConfigError::duration(
                "bucket_width",
                self.bucket_width,
                "from 1µs to 1h",
            ));
        }
        let window = self.bucket_width.saturating_mul(self.buckets as u32);
        if window > MAX_WINDOW {
            return Err(ConfigError::duration(
                "buckets × bucket_width",
                window,
                "at most 24h",
            ));
        }
        validate_slow(self.slow_call_threshold)
    }
}

fn validate_slow(threshold: Option<Duration>) -> Result<(), ConfigError> {
    match threshold {
        Some(t) if t > MAX_SLOW_CALL_THRESHOLD => Err(ConfigError::duration(
            "slow_call_threshold",
            t,
            "at most 24h",
        )),
        _ => Ok(()),
    }
}

/// A window configuration field out of its allowed range (the shape every Palisade
/// crate shares): it names the field, the value given and the allowed range.
///
/// ```
/// use palisade_window::{CountConfig, CountWindow};
///
/// let err = CountWindow::new(CountConfig::new(0)).unwrap_err();
/// assert_eq!(err.field(), "size");
/// assert_eq!(err.to_string(), "`size` is 0, allowed from 1 to 1000000");
/// ```
pub use palisade_clock::ConfigError;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_duration(text: &str) -> Option<Duration> {
        palisade_clock::duration::parse(text).ok()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("7ns"), Some(Duration::from_nanos(7)));
        for bad in [
            "",
            "ms",
            "10",
            "1..5s",
            "-1s",
            "1e3s",
            "10 parsecs",
            ".s",
            "1e300h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        CountConfig::default().validate().unwrap();
        TimeConfig::default().validate().unwrap();
    }

    #[test]
    fn every_bound_is_checked_and_named() {
        let count = |size| CountConfig {
            size,
            ..Default::default()
        };
        assert_eq!(count(0).validate().unwrap_err().field(), "size");
        assert_eq!(count(MAX_SIZE + 1).validate().unwrap_err().field(), "size");
        count(1).validate().unwrap();
        count(MAX_SIZE).validate().unwrap();

        let time = |buckets, width| TimeConfig {
            buckets,
            bucket_width: width,
            slow_call_threshold: None,
        };
        let s = Duration::from_secs(1);
        assert_eq!(time(0, s).validate().unwrap_err().field(), "buckets");
        assert_eq!(time(1001, s).validate().unwrap_err().field(), "buckets");
        let e = time(10, Duration::ZERO).validate().unwrap_err();
        assert_eq!(e.field(), "bucket_width");
        assert_eq!(
            e.to_string(),
            "`bucket_width` is 0s, allowed from 1µs to 1h"
        );
        assert_eq!(
            time(10, Duration::from_secs(3601))
                .validate()
                .unwrap_err()
                .field(),
            "bucket_width"
        );
        let e = time(25, Duration::from_secs(3600)).validate().unwrap_err();
        assert_eq!(e.field(), "buckets × bucket_width");
        assert!(e.to_string().contains("at most 24h"), "{e}");
        time(24, Duration::from_secs(3600)).validate().unwrap();
        time(1, MIN_BUCKET_WIDTH).validate().unwrap();

        let slow = TimeConfig {
            slow_call_threshold: Some(Duration::from_secs(86_401)),
            ..Default::default()
        };
        assert_eq!(slow.validate().unwrap_err().field(), "slow_call_threshold");
    }

    #[test]
    fn configs_deserialize_with_defaults_and_units() {
        let c: CountConfig = toml::from_str("size = 20\nslow_call_threshold = \"300ms\"").unwrap();
        assert_eq!(c.size, 20);
        assert_eq!(c.slow_call_threshold, Some(Duration::from_millis(300)));
        let c: CountConfig = toml::from_str("").unwrap();
        assert_eq!(c, CountConfig::default());

        let t: TimeConfig = serde_json::from_str(
            r#"{"bucket_width": {"secs": 2, "nanos": 0}, "slow_call_threshold": null}"#,
        )
        .unwrap();
        assert_eq!(t.bucket_width, Duration::from_secs(2));
        assert_eq!(t.buckets, 10);
        assert!(serde_json::from_str::<TimeConfig>(r#"{"bucket_width": "fast"}"#).is_err());
        assert!(serde_json::from_str::<TimeConfig>(r#"{"bucketz": 3}"#).is_err());
    }

    /// Forms that other sections accepted before all of them shared one grammar.
    #[test]
    fn every_duration_form_of_the_workspace() {
        let t: TimeConfig =
            toml::from_str("bucket_width = 250\nslow_call_threshold = \"1m30s\"").unwrap();
        assert_eq!(t.bucket_width, Duration::from_millis(250));
        assert_eq!(t.slow_call_threshold, Some(Duration::from_secs(90)));
        t.validate().unwrap();
        let t: TimeConfig =
            toml::from_str("bucket_width = \"1.5s\"\nslow_call_threshold = \"2min\"").unwrap();
        assert_eq!(t.bucket_width, Duration::from_millis(1500));
        assert_eq!(t.slow_call_threshold, Some(Duration::from_secs(120)));
        let c: CountConfig = toml::from_str("slow_call_threshold = 250").unwrap();
        assert_eq!(c.slow_call_threshold, Some(Duration::from_millis(250)));
        let e = toml::from_str::<TimeConfig>("bucket_width = \"fast\"").unwrap_err();
        assert!(e.to_string().contains("invalid duration \"fast\""), "{e}");
    }
}
