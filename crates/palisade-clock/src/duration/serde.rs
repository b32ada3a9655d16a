//! `#[serde(with = "palisade_clock::duration::serde")]` for a [`Duration`] field.
//!
//! Reads text in the [grammar of the module](super#the-grammar), a bare integer
//! as milliseconds, or a `{ secs, nanos }` table; writes the text of
//! [`format`](fn@super::format).
//!
//! ```
//! use palisade_clock::duration;
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Limits {
//!     #[serde(with = "duration::serde")]
//!     max_wait: Duration,
//! }
//!
//! for text in [r#"{"max_wait":"1.5s"}"#, r#"{"max_wait":1500}"#, r#"{"max_wait":"1s500ms"}"#] {
//!     let limits: Limits = serde_json::from_str(text)?;
//!     assert_eq!(limits.max_wait, Duration::from_millis(1500));
//!     assert_eq!(serde_json::to_string(&limits)?, r#"{"max_wait":"1500ms"}"#);
//! }
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use ::serde::de::{self, MapAccess, Visitor};
use ::serde::{Deserializer, Serializer};

use super::error::{DurationParseError, Kind};

/// Writes `d` as the text of [`format`](fn@super::format).
///
/// # Errors
///
/// Only those of the serializer.
pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&super::format(*d))
}

/// Reads text in the [grammar of the module](super#the-grammar), a bare integer as
/// milliseconds, or a `{ secs, nanos }` table.
///
/// # Errors
///
/// A [`DurationParseError`] as the deserializer's custom error, or the
/// deserializer's own error for a value of another type.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration: text such as \"250ms\", \"1.5s\" or \"1m30s\", or an integer of \
             milliseconds",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        super::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        v.checked_mul(1_000_000)
            .map(Duration::from_nanos)
            .ok_or_else(|| E::custom(DurationParseError::number(v, Kind::Overflow)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(DurationParseError::number(v, Kind::Negative))),
        }
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Duration, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(DurationParseError::number(v, Kind::Overflow))),
        }
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Duration, E> {
        match u128::try_from(v) {
            Ok(v) => self.visit_u128(v),
            Err(_) => Err(E::custom(DurationParseError::number(v, Kind::Negative))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        let kind = if v < 0.0 {
            Kind::Negative
        } else {
            Kind::NotInteger
        };
        Err(E::custom(DurationParseError::number(v, kind)))
    }

    /// `{ secs, nanos }`, as serde writes a `std::time::Duration`.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Duration, A::Error> {
        const FIELDS: &[&str] = &["secs", "nanos"];
        let (mut secs, mut nanos) = (None::<u64>, None::<u32>);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "secs" if secs.is_none() => secs = Some(map.next_value()?),
                "nanos" if nanos.is_none() => nanos = Some(map.next_value()?),
                "secs" => return Err(de::Error::duplicate_field("secs")),
                "nanos" => return Err(de::Error::duplicate_field("nanos")),
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        let secs = secs.ok_or_else(|| de::Error::missing_field("secs"))?;
        let nanos = nanos.ok_or_else(|| de::Error::missing_field("nanos"))?;
        if nanos >= 1_000_000_000 {
            return Err(de::Error::custom(format!(
                "invalid duration {{ secs = {secs}, nanos = {nanos} }}: `nanos` must be below \
                 1000000000"
            )));
        }
        let d = Duration::new(secs, nanos);
        if d > super::MAX {
            return Err(de::Error::custom(DurationParseError::number(
                format_args!("{{ secs = {secs}, nanos = {nanos} }}"),
                Kind::Overflow,
            )));
        }
        Ok(d)
    }
}
