use std::fmt;

/// A duration that [`parse`](super::parse) or the serde modules refuse.
///
/// Its `Display` quotes the value, says what is wrong and lists the accepted forms:
///
/// ```
/// use palisade_clock::duration;
///
/// let err = duration::parse("10 parsecs").unwrap_err();
/// assert_eq!(err.input(), "10 parsecs");
/// assert!(err.is_unknown_unit());
/// assert_eq!(
///     err.to_string(),
///     "invalid duration \"10 parsecs\": unknown unit \"parsecs\"; expected numbers with \
///      units ns, us (or µs), ms, s, m (or min), h, from the largest unit down, as in \
///      \"250ms\", \"1.5s\" or \"1m30s\"",
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationParseError {
    input: String,
    /// Whether the input was a bare number (shown as it is) rather than text (shown
    /// quoted).
    number: bool,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Nothing but whitespace.
    Empty,
    /// A minus sign.
    Negative,
    /// A number at the end of the text without a unit.
    MissingUnit,
    /// Letters that are not a unit.
    UnknownUnit(String),
    /// A character where a number or a unit was expected.
    Unexpected(char),
    /// A unit no smaller than the one before it.
    OutOfOrder(String),
    /// More than `u64::MAX` nanoseconds.
    Overflow,
    /// A bare number (serde) that is not an integer.
    #[cfg(feature = "serde")]
    NotInteger,
}

impl DurationParseError {
    pub(super) fn text(input: &str, kind: Kind) -> Self {
        DurationParseError {
            input: input.to_owned(),
            number: false,
            kind,
        }
    }

    #[cfg(feature = "serde")]
    pub(super) fn number(input: impl fmt::Display, kind: Kind) -> Self {
        DurationParseError {
            input: input.to_string(),
            number: true,
            kind,
        }
    }

    /// The value refused, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Whether the value is negative.
    pub fn is_negative(&self) -> bool {
        self.kind == Kind::Negative
    }

    /// Whether the value is longer than [`MAX`](super::MAX).
    pub fn is_overflow(&self) -> bool {
        self.kind == Kind::Overflow
    }

    /// Whether a number has no unit (`"250"` as text).
    pub fn is_missing_unit(&self) -> bool {
        self.kind == Kind::MissingUnit
    }

    /// Whether a unit is not one of `ns`, `us`, `µs`, `ms`, `s`, `m`, `min`, `h`.
    pub fn is_unknown_unit(&self) -> bool {
        matches!(self.kind, Kind::UnknownUnit(_))
    }
}

impl fmt::Display for DurationParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.number {
            write!(f, "invalid duration {}: ", self.input)?;
        } else {
            write!(f, "invalid duration {:?}: ", self.input)?;
        }
        match &self.kind {
            Kind::Empty => f.write_str("empty")?,
            Kind::Negative => f.write_str("negative")?,
            Kind::MissingUnit => f.write_str("a number without a unit")?,
            Kind::UnknownUnit(unit) => write!(f, "unknown unit {unit:?}")?,
            Kind::Unexpected(c) => write!(f, "unexpected {:?}", c.to_string())?,
            Kind::OutOfOrder(unit) => write!(
                f,
                "unit {unit:?} after a unit no larger than it (each unit once, the largest first)"
            )?,
            Kind::Overflow => {
                f.write_str("longer than 18446744073709551615ns (about 584 years)")?
            }
            #[cfg(feature = "serde")]
            Kind::NotInteger => {
                f.write_str("a number without a unit is milliseconds and must be an integer")?
            }
        }
        if self.number {
            f.write_str("; expected an integer of milliseconds, or text: ")?;
        } else {
            f.write_str("; expected ")?;
        }
        f.write_str(
            "numbers with units ns, us (or µs), ms, s, m (or min), h, from the largest unit \
             down, as in \"250ms\", \"1.5s\" or \"1m30s\"",
        )
    }
}

impl std::error::Error for DurationParseError {}
