use std::fmt;
use std::time::Duration;

/// How one attempt ended: the vocabulary every strategy reads.
///
/// | outcome | retried | counted by a breaker |
/// | --- | --- | --- |
/// | [`Success`](Outcome::Success) | no | as a success |
/// | [`Transient`](Outcome::Transient) (timeouts, resets, 429, 502–504) | yes | as a failure |
/// | [`Permanent`](Outcome::Permanent) (500, a panic) | no | as a failure |
/// | [`Ignored`](Outcome::Ignored) (400, 404, the caller cancelled) | no | not at all |
/// | [`Rejected`](Outcome::Rejected) by a strategy | no | not at all |
///
/// `Outcome` is `Copy` and small, so passing it around costs nothing.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The attempt succeeded.
    Success,
    /// Retrying may help; may carry a hint of when.
    Transient(Transient),
    /// The dependency is broken; retrying will not help. Counts against health.
    Permanent,
    /// Neither success nor failure: the caller's own fault, a business rejection, or
    /// a call the caller cancelled. Not retried and not counted.
    Ignored,
    /// A strategy refused the call before it reached the dependency.
    Rejected(Rejection),
}

impl Outcome {
    /// A transient failure with no retry-after hint, which may have reached the server.
    pub const fn transient() -> Self {
        Outcome::Transient(Transient::new())
    }

    /// A transient failure whose response asked to retry after `delay`.
    pub const fn transient_after(delay: Duration) -> Self {
        Outcome::Transient(Transient::new().with_retry_after(delay))
    }

    /// The coarse kind that sliding windows count.
    #[inline]
    pub const fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Success => OutcomeKind::Success,
            Outcome::Transient(_) | Outcome::Permanent => OutcomeKind::Failure,
            Outcome::Ignored | Outcome::Rejected(_) => OutcomeKind::Ignored,
        }
    }

    /// Whether this is a success.
    #[inline]
    pub const fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// Whether this is a transient or permanent failure.
    #[inline]
    pub const fn is_failure(&self) -> bool {
        matches!(self, Outcome::Transient(_) | Outcome::Permanent)
    }

    /// Whether the taxonomy says a retry may help (a transient failure). Whether a
    /// retry is also *safe* is [`retry_allowed`]'s question.
    #[inline]
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Transient(_))
    }

    /// The hint of when to try again: a transient failure's retry-after, or a
    /// rejection's.
    #[inline]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Outcome::Transient(t) => t.retry_after(),
            Outcome::Rejected(r) => r.retry_after(),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Transient(t) => match t.retry_after {
                Some(d) => write!(f, "transient failure (retry after {d:?})"),
                None => f.write_str("transient failure"),
            },
            Outcome::Permanent => f.write_str("permanent failure"),
            Outcome::Ignored => f.write_str("ignored"),
            Outcome::Rejected(r) => write!(f, "{r}"),
        }
    }
}

/// The coarse kind of an [`Outcome`], as sliding windows and breakers count it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// A success.
    Success,
    /// A transient or permanent failure.
    Failure,
    /// Not counted: ignored outcomes and rejections.
    Ignored,
}

/// The details of a transient failure.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transient {
    retry_after: Option<Duration>,
    delivery: Delivery,
}

impl Transient {
    /// No hint; the request may have reached the server.
    pub const fn new() -> Self {
        Transient {
            retry_after: None,
            delivery: Delivery::MaybeDelivered,
        }
    }

    /// With a hint of when to try again (taken from a `Retry-After` header, say).
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// With what is known of whether the request reached the server.
    pub const fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The hint of when to try again.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the request may have reached the server.
    pub const fn delivery(&self) -> Delivery {
        self.delivery
    }
}

/// Whether a failed request may already have reached the server, which decides
/// whether retrying a non-idempotent operation is safe.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// The request certainly did not reach the server (the connection was refused,
    /// a strategy rejected it locally, the server said it did not process it).
    NotDelivered,
    /// The request may have reached the server (a reset mid-request, a timeout). The
    /// default: without evidence, assume it may have.
    #[default]
    MaybeDelivered,
}

/// Whether repeating an operation has the same effect as doing it once.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Idempotency {
    /// Safe to repeat (GET, PUT, DELETE, an upsert keyed by a request id).
    #[default]
    Idempotent,
    /// Repeating may do the work twice (a POST that charges a card).
    NonIdempotent,
}

impl Idempotency {
    /// The idempotency HTTP gives a method (RFC 9110 §9.2.2): GET, HEAD, OPTIONS,
    /// TRACE, PUT and DELETE are idempotent; everything else is not.
    pub fn of_http_method(method: &str) -> Self {
        match method {
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE" => Idempotency::Idempotent,
            _ => Idempotency::NonIdempotent,
        }
    }
}

/// Whether retrying is safe: always for an idempotent operation; for a
/// non-idempotent one only if the failed request certainly did not reach the
/// server, unless the caller allows it (`allow_non_idempotent`).
///
/// ```
/// use palisade_classify::{Delivery, Idempotency, retry_allowed};
///
/// assert!(retry_allowed(Idempotency::Idempotent, Delivery::MaybeDelivered, false));
/// assert!(retry_allowed(Idempotency::NonIdempotent, Delivery::NotDelivered, false));
/// assert!(!retry_allowed(Idempotency::NonIdempotent, Delivery::MaybeDelivered, false));
/// assert!(retry_allowed(Idempotency::NonIdempotent, Delivery::MaybeDelivered, true));
/// ```
#[inline]
pub const fn retry_allowed(
    idempotency: Idempotency,
    delivery: Delivery,
    allow_non_idempotent: bool,
) -> bool {
    matches!(idempotency, Idempotency::Idempotent)
        || matches!(delivery, Delivery::NotDelivered)
        || allow_non_idempotent
}

/// A strategy's refusal of a call: which strategy, and when to try again.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rejection {
    strategy: Strategy,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// A rejection by `strategy` with no hint of when to try again.
    pub const fn new(strategy: Strategy) -> Self {
        Rejection {
            strategy,
            retry_after: None,
        }
    }

    /// With a hint of when trying again may succeed.
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The strategy that refused the call.
    pub const fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// When trying again may succeed, if the strategy knows.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rejected by the {}", self.strategy)?;
        if let Some(d) = self.retry_after {
            write!(f, " (try again in {d:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

/// The strategies that can refuse a call.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Strategy {
    /// The circuit breaker is open (or its half-open probes are all taken).
    CircuitBreaker,
    /// The bulkhead is full and its queue too, or the wait in it ran out.
    Bulkhead,
    /// The rate limiter has no token now.
    RateLimiter,
    /// The adaptive concurrency limit is reached.
    AdaptiveLimit,
    /// Client-side adaptive throttling dropped the request locally.
    Throttle,
    /// The retry budget has no retry left.
    RetryBudget,
    /// The deadline is too close to start (or continue) the work.
    Deadline,
}

impl Strategy {
    /// A short, stable name for logs and metric labels (`circuit_breaker`, …).
    pub const fn as_str(&self) -> &'static str {
        match self {
            Strategy::CircuitBreaker => "circuit_breaker",
            Strategy::Bulkhead => "bulkhead",
            Strategy::RateLimiter => "rate_limiter",
            Strategy::AdaptiveLimit => "adaptive_limit",
            Strategy::Throttle => "throttle",
            Strategy::RetryBudget => "retry_budget",
            Strategy::Deadline => "deadline",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::CircuitBreaker => "circuit breaker",
            Strategy::Bulkhead => "bulkhead",
            Strategy::RateLimiter => "rate limiter",
            Strategy::AdaptiveLimit => "adaptive concurrency limit",
            Strategy::Throttle => "adaptive throttle",
            Strategy::RetryBudget => "retry budget",
            Strategy::Deadline => "deadline",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(Outcome::Success.kind(), OutcomeKind::Success);
        assert_eq!(Outcome::transient().kind(), OutcomeKind::Failure);
        assert_eq!(Outcome::Permanent.kind(), OutcomeKind::Failure);
        assert_eq!(Outcome::Ignored.kind(), OutcomeKind::Ignored);
        let r = Outcome::Rejected(Rejection::new(Strategy::Bulkhead));
        assert_eq!(r.kind(), OutcomeKind::Ignored);
        assert!(!r.is_retryable() && !r.is_failure() && !r.is_success());
        assert!(Outcome::transient().is_retryable());
        assert!(!Outcome::Permanent.is_retryable());
    }

    #[test]
    fn hints() {
        let d = Duration::from_secs(3);
        assert_eq!(Outcome::transient_after(d).retry_after(), Some(d));
        let r = Rejection::new(Strategy::CircuitBreaker).with_retry_after(d);
        assert_eq!(Outcome::Rejected(r).retry_after(), Some(d));
        assert_eq!(
            r.to_string(),
            "rejected by the circuit breaker (try again in 3s)"
        );
        assert_eq!(Outcome::Permanent.retry_after(), None);
        assert_eq!(
            Outcome::transient_after(d).to_string(),
            "transient failure (retry after 3s)"
        );
    }

    #[test]
    fn http_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert_eq!(Idempotency::of_http_method(m), Idempotency::Idempotent);
        }
        for m in ["POST", "PATCH", "CONNECT", "get", ""] {
            assert_eq!(Idempotency::of_http_method(m), Idempotency::NonIdempotent);
        }
    }

    #[test]
    fn retry_safety_table() {
        use Delivery::*;
        use Idempotency::*;
        let cases = [
            (Idempotent, MaybeDelivered, false, true),
            (Idempotent, NotDelivered, false, true),
            (NonIdempotent, NotDelivered, false, true),
            (NonIdempotent, MaybeDelivered, false, false),
            (NonIdempotent, MaybeDelivered, true, true),
        ];
        for (i, d, allow, expected) in cases {
            assert_eq!(retry_allowed(i, d, allow), expected, "{i:?} {d:?} {allow}");
        }
    }
}
