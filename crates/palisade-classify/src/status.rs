use std::time::Duration;

use crate::{Classify, Delivery, Outcome, Transient};

/// The default bound on a server's retry-after hint: 10 minutes.
///
/// A hint is a server's wish, and an untrusted one: a misconfigured or hostile server
/// could otherwise park every caller for days. Ten minutes is longer than any sane
/// backoff and still bounded; the retry executor clamps further to its own maximum
/// delay.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The outcome of an HTTP status code.
///
/// | status | outcome |
/// | --- | --- |
/// | 1xx, 2xx, 3xx | success |
/// | 408 Request Timeout, 429 Too Many Requests | transient (429: not delivered, the server refused it unprocessed) |
/// | other 4xx | ignored: the caller's fault, not the dependency's health |
/// | 502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout | transient |
/// | 500 and other 5xx | permanent |
/// | anything outside 100..=599 | permanent: a broken server |
///
/// ```
/// use palisade_classify::{Outcome, classify_status};
///
/// assert_eq!(classify_status(200), Outcome::Success);
/// assert_eq!(classify_status(404), Outcome::Ignored);
/// assert!(classify_status(503).is_retryable());
/// assert_eq!(classify_status(500), Outcome::Permanent);
/// ```
pub const fn classify_status(status: u16) -> Outcome {
    match status {
        100..=399 => Outcome::Success,
        429 => Outcome::Transient(Transient::new().with_delivery(Delivery::NotDelivered)),
        408 => Outcome::transient(),
        400..=499 => Outcome::Ignored,
        502..=504 => Outcome::transient(),
        _ => Outcome::Permanent,
    }
}

/// A response whose status (and, with the `http` feature, `Retry-After` header) a
/// classifier can read.
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait HttpResponse {
    /// The status code.
    fn status_code(&self) -> u16;

    /// The raw `Retry-After` header, if there is one (the first, if there are
    /// several).
    fn retry_after_header(&self) -> Option<&[u8]> {
        None
    }

    /// Calls `each` with every raw `Retry-After` header, in order. The default
    /// calls it with [`retry_after_header`](Self::retry_after_header) only; a
    /// response that can carry the header several times overrides it, so that a
    /// classifier sees all of them.
    fn for_each_retry_after(&self, each: &mut dyn FnMut(&[u8])) {
        if let Some(header) = self.retry_after_header() {
            each(header);
        }
    }
}

impl HttpResponse for u16 {
    fn status_code(&self) -> u16 {
        *self
    }
}

/// Classifies HTTP responses by status, reading `Retry-After` on 429 and 503.
///
/// `Ok(response)` is classified by [`classify_status`]; an `Err` (the request did not
/// produce a response) is a transient failure. A `Retry-After` header is parsed with
/// [`parse_retry_after`](crate::parse_retry_after) and clamped to
/// [`max_retry_after`](HttpStatus::max_retry_after) (default
/// [`DEFAULT_MAX_RETRY_AFTER`]); a malformed one gives no hint and never a panic.
/// A response with several `Retry-After` headers gets the most conservative hint:
/// the longest delay among those that parse (the malformed ones are skipped), so
/// that a retry never comes sooner than any of them asks.
///
/// ```
/// use palisade_classify::{Classify, HttpStatus, Outcome};
///
/// let c = HttpStatus::new();
/// assert_eq!(c.classify(&Ok::<u16, ()>(201)), Outcome::Success);
/// assert_eq!(c.classify(&Ok::<u16, ()>(400)), Outcome::Ignored);
/// ```
#[derive(Copy, Clone, Debug)]
pub struct HttpStatus {
    max_retry_after: Duration,
}

impl Default for HttpStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpStatus {
    /// A classifier with the default retry-after bound.
    pub const fn new() -> Self {
        HttpStatus {
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Clamps retry-after hints to `max`.
    pub const fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The outcome of one response.
    pub fn classify_response<R: HttpResponse + ?Sized>(&self, response: &R) -> Outcome {
        let status = response.status_code();
        let outcome = classify_status(status);
        match outcome {
            Outcome::Transient(t) if status == 429 || status == 503 => {
                let mut longest: Option<Duration> = None;
                response.for_each_retry_after(&mut |header| {
                    if let Some(delay) = self.hint(header) {
                        longest = Some(longest.map_or(delay, |l| l.max(delay)));
                    }
                });
                match longest {
                    Some(delay) => Outcome::Transient(t.with_retry_after(delay)),
                    None => outcome,
                }
            }
            _ => outcome,
        }
    }

    #[cfg(feature = "http")]
    fn hint(&self, header: &[u8]) -> Option<Duration> {
        crate::retry_after::parse_retry_after_at(
            header,
            std::time::SystemTime::now(),
            self.max_retry_after,
        )
        .ok()
    }

    #[cfg(not(feature = "http"))]
    fn hint(&self, _header: &[u8]) -> Option<Duration> {
        None
    }
}

impl<T: HttpResponse, E> Classify<T, E> for HttpStatus {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(_) => Outcome::transient(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status() {
        for s in 0..=1000u16 {
            let o = classify_status(s);
            match s {
                100..=399 => assert_eq!(o, Outcome::Success, "{s}"),
                408 | 429 | 502..=504 => assert!(o.is_retryable(), "{s}"),
                400..=499 => assert_eq!(o, Outcome::Ignored, "{s}"),
                _ => assert_eq!(o, Outcome::Permanent, "{s}"),
            }
        }
    }

    #[test]
    fn errors_are_transient() {
        assert_eq!(
            HttpStatus::new().classify(&Err::<u16, &str>("connect")),
            Outcome::transient()
        );
    }
}
