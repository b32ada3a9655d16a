//! `Retry-After` (RFC 9110 §10.2.3), parsed defensively.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::HttpResponse;

/// Why a `Retry-After` value gave no hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryAfterError {
    kind: RetryAfterErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum RetryAfterErrorKind {
    Empty,
    NotText,
    Malformed,
}

impl fmt::Display for RetryAfterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RetryAfterErrorKind::Empty => "is empty",
            RetryAfterErrorKind::NotText => "is not visible ASCII",
            RetryAfterErrorKind::Malformed => "is malformed",
        };
        write!(
            f,
            "Retry-After {what}: expected delay-seconds (digits, 0 or more) or an HTTP-date \
             such as `Sun, 06 Nov 1994 08:49:37 GMT`"
        )
    }
}

impl std::error::Error for RetryAfterError {}

/// Parses a `Retry-After` value in either form, against the current wall-clock time,
/// and clamps it to `max`.
///
/// See [`parse_retry_after_at`] for the rules.
pub fn parse_retry_after(value: &[u8], max: Duration) -> Result<Duration, RetryAfterError> {
    parse_retry_after_at(value, SystemTime::now(), max)
}

/// Parses a `Retry-After` value as seen at `now`, and clamps it to `max`.
///
/// - delay-seconds: one or more ASCII digits, surrounding whitespace allowed; values
///   too large for any clock clamp to `max`.
/// - HTTP-date in any of the three forms HTTP allows (IMF-fixdate, RFC 850,
///   asctime): the time from `now` until then; a date in the past means "now"
///   (zero); a far-future date clamps to `max`.
/// - Anything else (signs, fractions, units, garbage, non-ASCII) is an error.
///
/// It never panics, whatever the input.
///
/// ```
/// use palisade_classify::parse_retry_after_at;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
///
/// let max = Duration::from_secs(600);
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after_at(b"120", now, max), Ok(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after_at(b"Sun, 06 Nov 1994 08:50:07 GMT", now, max),
///     Ok(Duration::from_secs(30)),
/// );
/// assert_eq!(parse_retry_after_at(b"99999999999999999999", now, max), Ok(max));
/// assert!(parse_retry_after_at(b"soon", now, max).is_err());
/// ```
pub fn parse_retry_after_at(
    value: &[u8],
    now: SystemTime,
    max: Duration,
) -> Result<Duration, RetryAfterError> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|s| s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .ok_or(RetryAfterError {
            kind: RetryAfterErrorKind::NotText,
        })?
        .trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(RetryAfterError {
            kind: RetryAfterErrorKind::Empty,
        });
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a very long time": clamp.
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Ok(Duration::from_secs(secs).min(max));
    }
    let date = httpdate::parse_http_date(text).map_err(|_| RetryAfterError {
        kind: RetryAfterErrorKind::Malformed,
    })?;
    Ok(date.duration_since(now).unwrap_or(Duration::ZERO).min(max))
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B> HttpResponse for http::Response<B> {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    fn retry_after_header(&self) -> Option<&[u8]> {
        self.headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.as_bytes())
    }
    fn for_each_retry_after(&self, each: &mut dyn FnMut(&[u8])) {
        for value in self.headers().get_all(http::header::RETRY_AFTER) {
            each(value.as_bytes());
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl HttpResponse for http::StatusCode {
    fn status_code(&self) -> u16 {
        self.as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Classify, HttpStatus, Outcome};
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    const MAX: Duration = Duration::from_secs(600);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // Sun, 06 Nov 1994 08:49:37 GMT
    const T: u64 = 784_111_777;

    #[test]
    fn delta_seconds() {
        assert_eq!(parse_retry_after_at(b"0", at(T), MAX), Ok(Duration::ZERO));
        assert_eq!(
            parse_retry_after_at(b" 5\t", at(T), MAX),
            Ok(Duration::from_secs(5))
        );
        assert_eq!(parse_retry_after_at(b"601", at(T), MAX), Ok(MAX));
        assert_eq!(
            parse_retry_after_at(b"18446744073709551616", at(T), MAX),
            Ok(MAX)
        );
        for bad in [
            &b"-1"[..],
            b"+1",
            b"1.5",
            b"1s",
            b"0x10",
            b"",
            b"  ",
            b"1 2",
        ] {
            assert!(parse_retry_after_at(bad, at(T), MAX).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let expected = Ok(Duration::from_secs(60));
        for form in [
            &b"Sun, 06 Nov 1994 08:50:37 GMT"[..],
            b"Sunday, 06-Nov-94 08:50:37 GMT",
            b"Sun Nov  6 08:50:37 1994",
        ] {
            assert_eq!(parse_retry_after_at(form, at(T), MAX), expected, "{form:?}");
        }
    }

    #[test]
    fn past_dates_mean_now() {
        assert_eq!(
            parse_retry_after_at(b"Sun, 06 Nov 1994 08:49:36 GMT", at(T), MAX),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after_at(b"Thu, 01 Jan 1970 00:00:00 GMT", at(T), MAX),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn far_future_dates_clamp() {
        assert_eq!(
            parse_retry_after_at(b"Fri, 31 Dec 9999 23:59:59 GMT", at(T), MAX),
            Ok(MAX)
        );
    }

    #[test]
    fn malformed_dates_are_errors() {
        for bad in [
            &b"Sun, 06 Nov 1994 08:49:37"[..],
            b"Sun, 32 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Foo 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 25:49:37 GMT",
            b"tomorrow",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{e9}".as_bytes(),
            b"\xff\xfe",
            b"Sun, 06 Nov 1994 08:49:37 GMT\x00",
        ] {
            let err = parse_retry_after_at(bad, at(T), MAX).unwrap_err();
            assert!(err.to_string().starts_with("Retry-After"), "{err}");
        }
    }

    #[test]
    fn several_headers_give_the_longest_delay() {
        let c = HttpStatus::new().max_retry_after(Duration::from_secs(60));
        let with = |values: &[&str]| {
            let mut b = http::Response::builder().status(503);
            for v in values {
                b = b.header("retry-after", *v);
            }
            c.classify(&Ok::<_, ()>(b.body(()).unwrap())).retry_after()
        };
        // The longest, wherever it comes; malformed ones are skipped.
        assert_eq!(with(&["5", "20", "10"]), Some(Duration::from_secs(20)));
        assert_eq!(with(&["20", "5"]), Some(Duration::from_secs(20)));
        assert_eq!(with(&["soon", "7"]), Some(Duration::from_secs(7)));
        assert_eq!(with(&["7", "soon"]), Some(Duration::from_secs(7)));
        // Still clamped to the bound.
        assert_eq!(with(&["3", "3600"]), Some(Duration::from_secs(60)));
        assert_eq!(with(&["soon", "later"]), None);
        // A list in one header is not the grammar: no hint.
        assert_eq!(with(&["5, 20"]), None);
    }

    #[test]
    fn response_classification_reads_the_header() {
        let c = HttpStatus::new().max_retry_after(Duration::from_secs(30));
        let resp = http::Response::builder()
            .status(503)
            .header("retry-after", "7")
            .body(())
            .unwrap();
        assert_eq!(
            c.classify(&Ok::<_, ()>(resp)),
            Outcome::transient_after(Duration::from_secs(7))
        );
        let resp = http::Response::builder()
            .status(429)
            .header("retry-after", "3600")
            .body(())
            .unwrap();
        assert_eq!(
            c.classify(&Ok::<_, ()>(resp)).retry_after(),
            Some(Duration::from_secs(30))
        );
        let resp = http::Response::builder()
            .status(503)
            .header("retry-after", "garbage")
            .body(())
            .unwrap();
        let outcome = c.classify(&Ok::<_, ()>(resp));
        assert!(outcome.is_retryable() && outcome.retry_after().is_none());
        // A 500 ignores the header.
        let resp = http::Response::builder()
            .status(500)
            .header("retry-after", "5")
            .body(())
            .unwrap();
        assert_eq!(c.classify(&Ok::<_, ()>(resp)), Outcome::Permanent);
        assert_eq!(
            c.classify(&Ok::<_, ()>(http::StatusCode::BAD_GATEWAY)),
            Outcome::transient()
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_never_exceeds_max(bytes in proptest::collection::vec(any::<u8>(), 0..64), now in 0u64..10_000_000_000) {
            if let Ok(d) = parse_retry_after_at(&bytes, at(now), MAX) {
                prop_assert!(d <= MAX);
            }
        }

        #[test]
        fn digits_round_trip(secs in 0u64..=600) {
            prop_assert_eq!(parse_retry_after_at(secs.to_string().as_bytes(), at(T), MAX), Ok(Duration::from_secs(secs)));
        }
    }
}
