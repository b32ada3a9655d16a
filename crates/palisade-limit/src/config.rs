//! Validation errors shared by every configuration of this crate. Durations in
//! serde configurations are read and written by [`palisade_clock::duration::serde`].

use std::fmt;
use std::time::Duration;

use palisade_clock::duration;

/// A configuration value outside its allowed range (the shape every Palisade crate
/// shares): it names the field, the value given and the range allowed, for example
/// ``"`max_concurrent` is 0, allowed 1..=1000000"``.
pub use palisade_clock::ConfigError;

/// Checks `lo <= value <= hi`.
pub(crate) fn check_range<T: PartialOrd + fmt::Debug>(
    field: &'static str,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::new(field, &value, format!("{lo:?}..={hi:?}")));
    }
    Ok(())
}

/// Checks a duration is in `lo..=hi`; the error writes all three in the duration
/// grammar.
pub(crate) fn check_duration(
    field: &'static str,
    value: Duration,
    lo: Duration,
    hi: Duration,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        let (lo, hi) = (duration::format(lo), duration::format(hi));
        return Err(ConfigError::duration(field, value, format!("{lo}..={hi}")));
    }
    Ok(())
}

/// Checks a floating-point value is finite and in `lo..=hi`.
pub(crate) fn check_f64(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<(), ConfigError> {
    if !value.is_finite() || value < lo || value > hi {
        return Err(ConfigError::new(field, value, format!("{lo}..={hi}")));
    }
    Ok(())
}

/// The longest duration any configuration of this crate accepts: a day. Longer
/// waits and periods are almost certainly a unit mistake.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("1500us", Duration::from_micros(1500)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(duration::parse(text), Ok(d));
            assert_eq!(duration::parse(&duration::format(d)), Ok(d));
        }
        assert_eq!(duration::format(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration::parse("10 µs"), Ok(Duration::from_micros(10)));
        assert!(duration::parse("5").is_err());
        assert!(duration::parse("s").is_err());
        assert!(duration::parse("5 fortnights").is_err());
        assert!(duration::parse("99999999999999999999h").is_err());
    }

    /// Forms that other sections accepted before all of them shared one grammar.
    #[test]
    fn every_duration_form_of_the_workspace() {
        use crate::{BulkheadConfig, RateLimiterConfig, ThrottleConfig};
        let b: BulkheadConfig =
            toml::from_str("max_concurrent = 4\nmax_queue = 8\nmax_wait = \"1.5s\"").unwrap();
        assert_eq!(b.max_wait, Duration::from_millis(1500));
        let r: RateLimiterConfig = toml::from_str("rate = 5\nperiod = \"2min\"").unwrap();
        assert_eq!(r.period, Duration::from_secs(120));
        let t: ThrottleConfig = toml::from_str("window = \"1m30s\"").unwrap();
        assert_eq!(t.window, Duration::from_secs(90));
        let r: RateLimiterConfig = toml::from_str("rate = 5\nperiod = 250").unwrap();
        assert_eq!(r.period, Duration::from_millis(250));
        let b: BulkheadConfig =
            serde_json::from_str(r#"{"max_wait": {"secs": 1, "nanos": 500000000}}"#).unwrap();
        assert_eq!(b.max_wait, Duration::from_millis(1500));
        let e = toml::from_str::<BulkheadConfig>("max_wait = \"1.5 sec\"").unwrap_err();
        assert!(e.to_string().contains("unknown unit \"sec\""), "{e}");
    }

    #[test]
    fn errors_name_field_and_range() {
        let e = check_range("max_concurrent", 0u32, 1, 10).unwrap_err();
        assert_eq!(e.field(), "max_concurrent");
        assert_eq!(e.to_string(), "`max_concurrent` is 0, allowed 1..=10");
    }
}
