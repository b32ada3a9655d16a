//! `#[serde(with = "palisade_clock::duration::serde_opt", default)]` for an
//! `Option<Duration>` field.
//!
//! A value is read and written as by [`duration::serde`](super::serde); a `null`
//! (JSON) is `None`, and `None` is written as the format's none (a TOML table
//! leaves the field out). Add `default` to the field (or the struct) so that a
//! missing field is `None`: serde requires it with `with`.
//!
//! ```
//! use palisade_clock::duration;
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
//! struct Window {
//!     #[serde(with = "duration::serde_opt", default)]
//!     slow_call_threshold: Option<Duration>,
//! }
//!
//! let w: Window = toml::from_str("slow_call_threshold = \"2min\"")?;
//! assert_eq!(w.slow_call_threshold, Some(Duration::from_secs(120)));
//! let w: Window = toml::from_str("")?;
//! assert_eq!(w.slow_call_threshold, None);
//! # Ok::<(), toml::de::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use ::serde::de::{self, Visitor};
use ::serde::{Deserializer, Serializer};

/// Writes `Some` as the text of [`format`](fn@super::format), `None` as none.
///
/// # Errors
///
/// Only those of the serializer.
pub fn serialize<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serializer.serialize_some(&super::format(*d)),
        None => serializer.serialize_none(),
    }
}

/// Reads `None` from a none (JSON `null`), otherwise a duration as
/// [`duration::serde::deserialize`](super::serde::deserialize) does.
///
/// # Errors
///
/// As [`duration::serde::deserialize`](super::serde::deserialize).
pub fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_option(OptionVisitor)
}

struct OptionVisitor;

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration or none")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        super::serde::deserialize(d).map(Some)
    }
}
