//! Deadlines across process boundaries.
//!
//! A deadline travels as the time remaining, never as a wall-clock instant, so clock
//! skew between machines does not matter. Two encodings are supported:
//!
//! | form | example | where |
//! | --- | --- | --- |
//! | gRPC `grpc-timeout` | `1500m` | an integer of at most 8 digits and a unit: `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds, `n` nanoseconds |
//! | plain milliseconds | `1500` | any header of your choosing, e.g. `x-request-timeout-ms` |
//!
//! Decoding treats the value as untrusted: surrounding whitespace is ignored,
//! anything else that is not the format is rejected with a [`HeaderError`] that
//! says what was wrong, and a valid value above the maximum is clamped to it (the
//! sender asked for more time than this service grants; the request is still
//! served). The default maximum is [`MAX_HEADER_TIMEOUT`]; the `_with_max` functions
//! take another. Nothing here panics.
//!
//! ```
//! use palisade_context::{Context, header};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Client: encode the time left.
//! let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(1500));
//! let value = header::encode_grpc_timeout(ctx.remaining().unwrap());
//! assert_eq!(value, "1500000u");
//!
//! // Server: decode it and derive the request's context.
//! let remaining = header::decode_grpc_timeout(&value).unwrap();
//! let (request, _guard) = Context::background().with_timeout(remaining);
//! assert_eq!(request.remaining(), Some(Duration::from_millis(1500)));
//!
//! assert!(header::decode_grpc_timeout("soon").is_err());
//! # }
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The largest timeout a decoded header grants by default: one hour.
///
/// A deadline header comes from the caller, who may be buggy or hostile; an hour is
/// longer than any request-scoped call should take, and short enough that a bogus
/// `99999999H` cannot pin a request's resources for years.
pub const MAX_HEADER_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The name of the gRPC timeout header.
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// The gRPC limit on the number of digits in a `grpc-timeout` value.
const GRPC_MAX_DIGITS: usize = 8;
const GRPC_MAX_VALUE: u64 = 99_999_999;

/// Encodes `remaining` as a `grpc-timeout` value: the finest unit whose value fits
/// in 8 digits, rounded up so the receiver never sees less time than was left
/// (gRPC's own encoders do the same). Durations beyond the format's range encode as
/// its maximum, `99999999H`.
pub fn encode_grpc_timeout(remaining: Duration) -> String {
    let nanos = remaining.as_nanos();
    const UNITS: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    for (scale, unit) in UNITS {
        let value = nanos.div_ceil(scale);
        if value <= GRPC_MAX_VALUE as u128 {
            return format!("{value}{unit}");
        }
    }
    format!("{GRPC_MAX_VALUE}H")
}

/// Decodes a `grpc-timeout` value, clamped to [`MAX_HEADER_TIMEOUT`].
pub fn decode_grpc_timeout(value: &str) -> Result<Duration, HeaderError> {
    decode_grpc_timeout_with_max(value, MAX_HEADER_TIMEOUT)
}

/// Decodes a `grpc-timeout` value, clamped to `max`.
pub fn decode_grpc_timeout_with_max(value: &str, max: Duration) -> Result<Duration, HeaderError> {
    grpc_timeout(value.trim().as_bytes(), max)
        .map_err(|reason| HeaderError::new(GRPC_TIMEOUT, value, reason))
}

/// [`decode_grpc_timeout_with_max`] of a header value's bytes, as `http`'s
/// `HeaderValue::as_bytes` gives them, with no need for the value to be
/// checked as text first. Optional whitespace around the value (spaces and
/// tabs, all a header value can hold) is ignored; any other byte that is not
/// the format refuses it.
///
/// ```
/// use palisade_context::header;
/// use std::time::Duration;
///
/// let max = Duration::from_secs(60);
/// assert_eq!(header::decode_grpc_timeout_bytes_with_max(b"1500m", max), Ok(Duration::from_millis(1500)));
/// assert!(header::decode_grpc_timeout_bytes_with_max(b"15\xc2\xb5", max).is_err());
/// ```
#[inline]
pub fn decode_grpc_timeout_bytes_with_max(
    value: &[u8],
    max: Duration,
) -> Result<Duration, HeaderError> {
    grpc_timeout(trim_ows(value), max)
        .map_err(|reason| HeaderError::new(GRPC_TIMEOUT, &String::from_utf8_lossy(value), reason))
}

fn grpc_timeout(trimmed: &[u8], max: Duration) -> Result<Duration, Reason> {
    let Some((&unit, digits)) = trimmed.split_last() else {
        return Err(Reason::Empty);
    };
    let scale: u64 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return Err(Reason::Unit),
    };
    if digits.is_empty() {
        return Err(Reason::NoDigits);
    }
    if digits.len() > GRPC_MAX_DIGITS {
        return Err(Reason::TooManyDigits);
    }
    let amount = parse_digits(digits).ok_or(Reason::NotDigits)?;
    // At most 99_999_999 hours: fits in u128 nanoseconds, not always in u64.
    Ok(match amount.checked_mul(scale) {
        Some(nanos) => Duration::from_nanos(nanos).min(max),
        None => clamp(u128::from(amount) * u128::from(scale), max),
    })
}

/// Encodes `remaining` as whole milliseconds, rounded up so the receiver never sees
/// less time than was left.
pub fn encode_millis(remaining: Duration) -> String {
    remaining.as_nanos().div_ceil(1_000_000).to_string()
}

/// Decodes a plain milliseconds value, clamped to [`MAX_HEADER_TIMEOUT`].
pub fn decode_millis(value: &str) -> Result<Duration, HeaderError> {
    decode_millis_with_max(value, MAX_HEADER_TIMEOUT)
}

/// Decodes a plain milliseconds value (ASCII digits only, at most 20, at most
/// `u64::MAX`), clamped to `max`.
///
/// A value that is not all digits is refused as such, whatever its length; one of
/// digits only that is longer than 20 digits or larger than `u64::MAX` is refused
/// as too large.
pub fn decode_millis_with_max(value: &str, max: Duration) -> Result<Duration, HeaderError> {
    millis(value.trim().as_bytes(), max).map_err(|reason| HeaderError::new(MILLIS, value, reason))
}

/// [`decode_millis_with_max`] of a header value's bytes, as `http`'s
/// `HeaderValue::as_bytes` gives them, with no need for the value to be
/// checked as text first. Optional whitespace around the value (spaces and
/// tabs, all a header value can hold) is ignored; any other byte that is not
/// a digit refuses it.
///
/// ```
/// use palisade_context::header;
/// use std::time::Duration;
///
/// let max = Duration::from_secs(60);
/// assert_eq!(header::decode_millis_bytes_with_max(b" 1500", max), Ok(Duration::from_millis(1500)));
/// assert_eq!(header::decode_millis_bytes_with_max(b"90000", max), Ok(max));
/// assert!(header::decode_millis_bytes_with_max(b"-1", max).is_err());
/// ```
#[inline]
pub fn decode_millis_bytes_with_max(value: &[u8], max: Duration) -> Result<Duration, HeaderError> {
    millis(trim_ows(value), max)
        .map_err(|reason| HeaderError::new(MILLIS, &String::from_utf8_lossy(value), reason))
}

/// The field name of a milliseconds header's errors.
const MILLIS: &str = "milliseconds timeout";

fn millis(digits: &[u8], max: Duration) -> Result<Duration, Reason> {
    if digits.is_empty() {
        return Err(Reason::Empty);
    }
    // Up to 19 digits cannot overflow a `u64`: one pass checks and adds.
    if digits.len() < 20 {
        let mut millis = 0u64;
        for &b in digits {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                return Err(Reason::NotDigits);
            }
            millis = millis * 10 + u64::from(digit);
        }
        return Ok(Duration::from_millis(millis).min(max));
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(Reason::NotDigits);
    }
    if digits.len() > 20 {
        return Err(Reason::TooManyDigits);
    }
    let millis = parse_digits(digits).ok_or(Reason::TooLarge)?;
    // Whole milliseconds: `from_millis` holds every `u64`.
    Ok(Duration::from_millis(millis).min(max))
}

/// The value of ASCII digits (at most 20), or `None` if one is not a digit or
/// the value is more than a `u64` holds.
fn parse_digits(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(value)
}

/// Optional whitespace (spaces and horizontal tabs) trimmed.
#[inline]
fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn clamp(nanos: u128, max: Duration) -> Duration {
    if nanos >= max.as_nanos() {
        max
    } else {
        // Below `max`, so it fits.
        Duration::new(
            (nanos / 1_000_000_000) as u64,
            (nanos % 1_000_000_000) as u32,
        )
    }
}

/// A deadline header value that is not in the expected format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    field: &'static str,
    value: String,
    reason: Reason,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Reason {
    Empty,
    Unit,
    NoDigits,
    TooManyDigits,
    /// Digits only, but more than a `u64` holds.
    TooLarge,
    NotDigits,
}

/// How much of a bad value an error repeats: enough to recognise it, bounded so a
/// hostile header cannot blow up logs.
const SHOWN: usize = 32;

impl HeaderError {
    #[cold]
    fn new(field: &'static str, value: &str, reason: Reason) -> Self {
        let mut shown: String = value.chars().take(SHOWN).collect();
        if value.chars().nth(SHOWN).is_some() {
            shown.push('…');
        }
        HeaderError {
            field,
            value: shown,
            reason,
        }
    }

    /// The header or form that was being decoded.
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = match (self.field, self.reason) {
            (GRPC_TIMEOUT, Reason::Unit) => "must end in a unit: H, M, S, m, u or n",
            (GRPC_TIMEOUT, Reason::TooManyDigits) => "allows at most 8 digits before the unit",
            (GRPC_TIMEOUT, _) => {
                "must be 1 to 8 ASCII digits followed by a unit (H, M, S, m, u, n)"
            }
            (_, Reason::TooManyDigits) => "too large: allows at most 20 digits",
            (_, Reason::TooLarge) => "too large: at most 18446744073709551615 (u64::MAX)",
            _ => "must be 1 to 20 ASCII digits (a count of milliseconds)",
        };
        write!(
            f,
            "invalid {} value {:?}: {}",
            self.field, self.value, expected
        )
    }
}

impl Error for HeaderError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(1500),
            Duration::from_millis(99_999_999),
            Duration::from_secs(3000),
        ] {
            let encoded = encode_grpc_timeout(d);
            let decoded = decode_grpc_timeout_with_max(&encoded, Duration::MAX).unwrap();
            assert!(decoded >= d, "{d:?} -> {encoded} -> {decoded:?}");
        }
        assert_eq!(encode_grpc_timeout(Duration::from_millis(10)), "10000000n");
        assert_eq!(encode_grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(1)), "1000000u");
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
        assert_eq!(
            decode_grpc_timeout("250m").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(decode_grpc_timeout(" 3S ").unwrap(), Duration::from_secs(3));
        assert_eq!(decode_grpc_timeout("7n").unwrap(), Duration::from_nanos(7));
    }

    #[test]
    fn grpc_clamps_and_rejects() {
        assert_eq!(
            decode_grpc_timeout("99999999H").unwrap(),
            MAX_HEADER_TIMEOUT
        );
        assert_eq!(
            decode_grpc_timeout_with_max("99999999H", Duration::MAX).unwrap(),
            Duration::from_secs(99_999_999 * 3600)
        );
        for bad in [
            "",
            " ",
            "S",
            "12",
            "12x",
            "123456789S",
            "-1S",
            "+1S",
            "1.5S",
            "１S",
            "1 S",
            "0x1S",
        ] {
            let err = decode_grpc_timeout(bad).unwrap_err();
            assert_eq!(err.field(), "grpc-timeout");
            assert!(
                err.to_string().starts_with("invalid grpc-timeout value"),
                "{err}"
            );
        }
        let long = "9".repeat(1000) + "S";
        let err = decode_grpc_timeout(&long).unwrap_err();
        assert!(err.to_string().len() < 200);
    }

    #[test]
    fn millis_round_trip_clamp_and_reject() {
        assert_eq!(encode_millis(Duration::from_micros(1500)), "2");
        assert_eq!(decode_millis("1500").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            decode_millis("18446744073709551615").unwrap(),
            MAX_HEADER_TIMEOUT
        );
        for bad in [
            "",
            "abc",
            "-5",
            "1.0",
            "99999999999999999999999",
            "18446744073709551616",
        ] {
            let err = decode_millis(bad).unwrap_err();
            assert!(err.to_string().contains("milliseconds"), "{err}");
        }
    }

    #[test]
    fn millis_errors_say_what_is_wrong() {
        let reason = |value: &str| decode_millis(value).unwrap_err().to_string();
        // 20 digits, one more than u64::MAX: too large, not "not digits".
        let e = reason("18446744073709551616");
        assert!(e.contains("too large: at most 18446744073709551615"), "{e}");
        assert!(!e.contains("ASCII digits"), "{e}");
        let e = reason("99999999999999999999");
        assert!(e.contains("too large"), "{e}");
        let e = reason("123456789012345678901");
        assert!(e.contains("too large: allows at most 20 digits"), "{e}");
        // Not digits, however long.
        for bad in ["abc", "1.0", "-5", "abcdefghijklmnopqrstuvwxyz", "1e400"] {
            let e = reason(bad);
            assert!(e.contains("must be 1 to 20 ASCII digits"), "{bad}: {e}");
        }
        assert_eq!(
            decode_millis(" 18446744073709551615 ").unwrap(),
            MAX_HEADER_TIMEOUT
        );
    }
}
