//! Validation errors shared by every configuration of this crate, and the textual
//! form of durations in serde configurations.

use std::fmt;
use std::time::Duration;

/// A configuration value outside its allowed range.
///
/// The message names the configuration, the field, the value given and the range
/// allowed, for example ``bulkhead: `max_concurrent` is 0, allowed 1..=1000000``.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    config: &'static str,
    field: &'static str,
    value: String,
    allowed: String,
}

impl ConfigError {
    pub(crate) fn new(
        config: &'static str,
        field: &'static str,
        value: impl fmt::Debug,
        allowed: impl Into<String>,
    ) -> Self {
        ConfigError {
            config,
            field,
            value: format!("{value:?}"),
            allowed: allowed.into(),
        }
    }

    /// The configuration the field belongs to (`bulkhead`, `rate_limiter`, …).
    pub fn config(&self) -> &'static str {
        self.config
    }

    /// The field whose value is out of range.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The allowed range, as text.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}` is {}, allowed {}",
            self.config, self.field, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

/// Checks `lo <= value <= hi`.
pub(crate) fn check_range<T: PartialOrd + fmt::Debug>(
    config: &'static str,
    field: &'static str,
    value: T,
    lo: T,
    hi: T,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError::new(
            config,
            field,
            &value,
            format!("{lo:?}..={hi:?}"),
        ));
    }
    Ok(())
}

/// Checks a floating-point value is finite and in `lo..=hi`.
pub(crate) fn check_f64(
    config: &'static str,
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
) -> Result<(), ConfigError> {
    if !value.is_finite() || value < lo || value > hi {
        return Err(ConfigError::new(
            config,
            field,
            value,
            format!("{lo}..={hi}"),
        ));
    }
    Ok(())
}

/// Durations in serde configurations: a string of an integer and a unit (`"250ms"`,
/// `"5s"`, `"2m"`; units `ns`, `us`, `ms`, `s`, `m`, `h`), or an integer of
/// milliseconds. Serialized as a string in the largest unit that is exact.
pub(crate) mod duration {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

    const UNITS: [(&str, u128); 6] = [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub(crate) fn format(d: Duration) -> String {
        let nanos = d.as_nanos();
        if nanos == 0 {
            return "0s".to_owned();
        }
        for (unit, size) in UNITS {
            if nanos % size == 0 {
                return format!("{}{unit}", nanos / size);
            }
        }
        unreachable!("every duration is a whole number of nanoseconds")
    }

    pub(crate) fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}` has no unit (ns, us, ms, s, m, h)"))?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` does not start with an integer"))?;
        let size = match unit.trim() {
            "µs" => 1_000,
            unit => UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, s)| *s)
                .ok_or_else(|| format!("`{text}` has an unknown unit (ns, us, ms, s, m, h)"))?,
        };
        let nanos = number as u128 * size;
        if nanos > u64::MAX as u128 {
            return Err(format!("`{text}` is too long"));
        }
        Ok(Duration::from_nanos(nanos as u64))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\" or \"5s\", or an integer of milliseconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_millis)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }
        }
        d.deserialize_any(V)
    }
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

    #[test]
    fn errors_name_field_and_range() {
        let e = check_range("bulkhead", "max_concurrent", 0u32, 1, 10).unwrap_err();
        assert_eq!(e.field(), "max_concurrent");
        assert_eq!(
            e.to_string(),
            "bulkhead: `max_concurrent` is 0, allowed 1..=10"
        );
    }
}
