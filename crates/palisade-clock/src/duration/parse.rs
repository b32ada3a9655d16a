use std::time::Duration;

use super::error::{DurationParseError, Kind};

/// Reads a duration in the [grammar of this module](super#the-grammar): `"250ms"`,
/// `"1.5s"`, `"2min"`, `"1m30s"`, `"1h2m3.5s"`.
///
/// ```
/// use palisade_clock::duration;
/// use std::time::Duration;
///
/// assert_eq!(duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(duration::parse("2 min"), Ok(Duration::from_secs(120)));
/// assert_eq!(duration::parse("0.5ns"), Ok(Duration::from_nanos(1))); // halves up
/// assert!(duration::parse("-1s").unwrap_err().is_negative());
/// assert!(duration::parse("250").unwrap_err().is_missing_unit());
/// assert!(duration::parse("6000000h").unwrap_err().is_overflow());
/// ```
///
/// # Errors
///
/// A [`DurationParseError`] for empty text, a negative number, a number without a
/// unit, an unknown unit, units out of order, any other text that is not numbers and
/// units, and a duration longer than [`MAX`](super::MAX).
pub fn parse(text: &str) -> Result<Duration, DurationParseError> {
    let err = |kind| DurationParseError::text(text, kind);
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err(Kind::Empty));
    }
    let mut total: u128 = 0;
    let mut previous: Option<Unit> = None;
    while let Some(first) = rest.chars().next() {
        if first == '-' {
            return Err(err(Kind::Negative));
        }
        let (whole, fraction, after) = number(rest).ok_or_else(|| err(Kind::Unexpected(first)))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit_text, after) = after.split_at(unit_len);
        if unit_text.is_empty() {
            return Err(err(match after.chars().next() {
                None => Kind::MissingUnit,
                Some(c) => Kind::Unexpected(c),
            }));
        }
        let unit =
            Unit::from_text(unit_text).ok_or_else(|| err(Kind::UnknownUnit(unit_text.into())))?;
        if previous.is_some_and(|p| unit >= p) {
            return Err(err(Kind::OutOfOrder(unit_text.into())));
        }
        previous = Some(unit);
        total = component(whole, fraction, unit)
            .and_then(|nanos| total.checked_add(nanos))
            .filter(|&t| t <= u128::from(u64::MAX))
            .ok_or_else(|| err(Kind::Overflow))?;
        rest = after.trim_start();
    }
    // `total` is at most `u64::MAX` (checked above).
    Ok(Duration::from_nanos(total as u64))
}

/// A unit, in increasing size, so that `<` compares them.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Nanos,
    Micros,
    Millis,
    Seconds,
    Minutes,
    Hours,
}

impl Unit {
    fn from_text(text: &str) -> Option<Unit> {
        Some(match text {
            "ns" => Unit::Nanos,
            "us" | "µs" => Unit::Micros,
            "ms" => Unit::Millis,
            "s" => Unit::Seconds,
            "m" | "min" => Unit::Minutes,
            "h" => Unit::Hours,
            _ => return None,
        })
    }

    /// The unit in nanoseconds as `k × 10^e`, with `k` at most 36 and `e` at most 11.
    fn scale(self) -> (u128, u32) {
        match self {
            Unit::Nanos => (1, 0),
            Unit::Micros => (1, 3),
            Unit::Millis => (1, 6),
            Unit::Seconds => (1, 9),
            Unit::Minutes => (6, 10),
            Unit::Hours => (36, 11),
        }
    }
}

/// Splits `digits[.digits]` (at least one digit in all) off the start of `text`:
/// the whole digits, the fraction digits and the rest.
fn number(text: &str) -> Option<(&str, &str, &str)> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let whole_len = digits(text);
    let (whole, rest) = text.split_at(whole_len);
    let (fraction, rest) = match rest.strip_prefix('.') {
        Some(after_point) => after_point.split_at(digits(after_point)),
        None => ("", rest),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    Some((whole, fraction, rest))
}

/// `whole.fraction × unit` in nanoseconds, rounded halves up; `None` beyond
/// `u64::MAX`.
fn component(whole: &str, fraction: &str, unit: Unit) -> Option<u128> {
    let (k, e) = unit.scale();
    let mut n: u128 = 0;
    for d in whole.bytes() {
        n = n * 10 + u128::from(d - b'0');
        if n > u128::from(u64::MAX) {
            return None;
        }
    }
    // At most 2^64 × 36 × 10^11 < 2^128.
    let nanos = n * k * 10u128.pow(e) + fraction_nanos(fraction.as_bytes(), k, e);
    (nanos <= u128::from(u64::MAX)).then_some(nanos)
}

/// `0.digits × k × 10^e`, rounded to the nearest integer, halves up, exactly for any
/// number of digits: `digits × k` is worked out digit by digit from the right, and
/// the point then moves `e` places right.
fn fraction_nanos(digits: &[u8], k: u128, e: u32) -> u128 {
    let e = e as usize;
    let n = digits.len();
    if n <= e {
        // Whole nanoseconds: at most 11 digits.
        let f = digits
            .iter()
            .fold(0u128, |f, d| f * 10 + u128::from(d - b'0'));
        return f * k * 10u128.pow((e - n) as u32);
    }
    // `digits × k` has `n - e` digits below the nanosecond point; the highest of them
    // decides the rounding, those above it (at most `e` of them and the last carry)
    // are the whole nanoseconds.
    let below = n - e;
    let (mut carry, mut whole, mut place, mut round_up) = (0u128, 0u128, 1u128, false);
    for (i, d) in digits.iter().rev().enumerate() {
        let x = u128::from(d - b'0') * k + carry;
        let (digit, next) = (x % 10, x / 10);
        carry = next;
        if i + 1 == below {
            round_up = digit >= 5;
        } else if i >= below {
            whole += digit * place;
            place *= 10;
        }
    }
    whole + carry * place + u128::from(round_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `0.digits × k × 10^e` rounded halves up, by plain integer arithmetic (for
    /// fractions short enough to fit).
    fn oracle(digits: &str, k: u128, e: u32) -> u128 {
        let n = digits.len() as u32;
        let f: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().unwrap()
        };
        let num = f * k * 10u128.pow(e);
        let den = 10u128.pow(n);
        (num + den / 2) / den
    }

    #[test]
    fn fractions_round_halves_up() {
        for unit in [
            Unit::Nanos,
            Unit::Micros,
            Unit::Millis,
            Unit::Seconds,
            Unit::Minutes,
            Unit::Hours,
        ] {
            let (k, e) = unit.scale();
            for digits in [
                "",
                "0",
                "5",
                "49",
                "05",
                "4999999999999",
                "5000000000001",
                "123456789012",
                "999999999999999",
                "0000000000005",
                "25",
                "75",
                "0166666666666",
                "9",
            ] {
                assert_eq!(
                    fraction_nanos(digits.as_bytes(), k, e),
                    oracle(digits, k, e),
                    "0.{digits} of {unit:?}"
                );
            }
        }
        // The carry of a long tail reaches the rounding digit.
        let long = format!("0{}", "9".repeat(200));
        assert_eq!(fraction_nanos(long.as_bytes(), 36, 11), 360_000_000_000);
        let tiny = format!("{}1", "0".repeat(200));
        assert_eq!(fraction_nanos(tiny.as_bytes(), 36, 11), 0);
    }

    #[test]
    fn numbers_split() {
        assert_eq!(number("1.5s"), Some(("1", "5", "s")));
        assert_eq!(number(".5s"), Some(("", "5", "s")));
        assert_eq!(number("5.s"), Some(("5", "", "s")));
        assert_eq!(number("12 ms"), Some(("12", "", " ms")));
        assert_eq!(number(".s"), None);
        assert_eq!(number("s"), None);
    }
}
