use std::error::Error;
use std::fmt;

use palisade_classify::{Outcome, Rejection, Strategy};
use palisade_context::Cause;

/// A retry configuration that cannot be built: which field, the value given, and
/// what is allowed (the shape every Palisade crate shares). Fields of the schedule
/// are prefixed `backoff.`, of the budget `budget.`, of hedging `hedging.`.
pub use palisade_clock::ConfigError;

/// Why the executor stopped without a success.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The last attempt's outcome is not retried: a permanent failure, an ignored
    /// outcome or a rejection. The error is the operation's own.
    NotRetryable,
    /// The failure was transient, but the operation is not idempotent and the
    /// request may have reached the server, and the policy does not allow it.
    NotSafe,
    /// An outer retry already retries this call, and the policy leaves retrying to it.
    OuterRetry,
    /// Every attempt the schedule allows was made.
    AttemptsExhausted,
    /// The next retry would end past the schedule's maximum elapsed time.
    ElapsedExhausted,
    /// The retry budget had no retry left.
    BudgetExhausted,
    /// The context's deadline passed, or the next attempt could not start before it.
    DeadlineExceeded,
    /// The context was cancelled.
    Cancelled,
}

impl StopReason {
    /// A short, stable name for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not_retryable",
            StopReason::NotSafe => "not_safe",
            StopReason::OuterRetry => "outer_retry",
            StopReason::AttemptsExhausted => "attempts_exhausted",
            StopReason::ElapsedExhausted => "elapsed_exhausted",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::DeadlineExceeded => "deadline_exceeded",
            StopReason::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::NotRetryable => "the failure is not retryable",
            StopReason::NotSafe => {
                "retrying a non-idempotent request that may have been delivered is not safe"
            }
            StopReason::OuterRetry => "an outer retry already retries this call",
            StopReason::AttemptsExhausted => "every attempt was made",
            StopReason::ElapsedExhausted => "the maximum elapsed time would be exceeded",
            StopReason::BudgetExhausted => "the retry budget is exhausted",
            StopReason::DeadlineExceeded => "the deadline leaves no time for another attempt",
            StopReason::Cancelled => "the context was cancelled",
        })
    }
}

/// The error of a retried call: why it stopped, after how many attempts, with the
/// last attempt's error (if an attempt ended with one).
///
/// - [`is_inner`](RetryError::is_inner): the operation's own error was not
///   retryable (or not safe to retry, or left to an outer retry) — treat it as
///   the error of a single call.
/// - [`is_exhausted`](RetryError::is_exhausted): attempts or elapsed time ran out.
/// - [`is_budget_exhausted`](RetryError::is_budget_exhausted): the retry budget
///   refused the retry (`Rejected` by the retry budget in the outcome taxonomy).
/// - [`is_deadline_exceeded`](RetryError::is_deadline_exceeded),
///   [`is_cancelled`](RetryError::is_cancelled): the context ended the call.
///
/// A last attempt that returned `Ok` (an `Ok` classified as a failure, such as an
/// HTTP 503 response) is returned as `Ok` when retrying stops, so the caller can
/// read it; a `RetryError` holds the last `Err` only. The exception is a call the
/// context ends during a backoff sleep: the discarded `Ok` was dropped before the
/// sleep, so the error has the last outcome and no
/// [`last_error`](RetryError::last_error).
///
/// It is one pointer wide (its fields live on the heap), so that a retried call's
/// `Result` stays as small as the value it carries: building one allocates, on
/// the failure path only.
pub struct RetryError<E> {
    inner: Box<Inner<E>>,
}

struct Inner<E> {
    reason: StopReason,
    attempts: u32,
    error: Option<E>,
    outcome: Option<Outcome>,
    cause: Option<Cause>,
}

impl<E> RetryError<E> {
    pub(crate) fn new(
        reason: StopReason,
        attempts: u32,
        error: Option<E>,
        outcome: Option<Outcome>,
    ) -> Self {
        RetryError {
            inner: Box::new(Inner {
                reason,
                attempts,
                error,
                outcome,
                cause: None,
            }),
        }
    }

    pub(crate) fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.inner.cause = cause;
        self
    }

    /// Why retrying stopped.
    pub fn reason(&self) -> StopReason {
        self.inner.reason
    }

    /// How many attempts were started, hedges included.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The outcome of the last completed attempt, if one completed.
    pub fn last_outcome(&self) -> Option<Outcome> {
        self.inner.outcome
    }

    /// The last attempt's error, if an attempt ended with one.
    pub fn last_error(&self) -> Option<&E> {
        self.inner.error.as_ref()
    }

    /// The last attempt's error, if an attempt ended with one.
    pub fn into_last_error(self) -> Option<E> {
        self.inner.error
    }

    /// Why the context ended, when it did.
    pub fn context_cause(&self) -> Option<&Cause> {
        self.inner.cause.as_ref()
    }

    /// Whether this is the operation's own error, which retrying did not or must
    /// not change (not retryable, not safe, or left to an outer retry).
    pub fn is_inner(&self) -> bool {
        matches!(
            self.inner.reason,
            StopReason::NotRetryable | StopReason::NotSafe | StopReason::OuterRetry
        )
    }

    /// Whether the attempts or the elapsed time allowed ran out.
    pub fn is_exhausted(&self) -> bool {
        matches!(
            self.inner.reason,
            StopReason::AttemptsExhausted | StopReason::ElapsedExhausted
        )
    }

    /// Whether the retry budget refused a retry.
    pub fn is_budget_exhausted(&self) -> bool {
        self.inner.reason == StopReason::BudgetExhausted
    }

    /// Whether the context's deadline stopped the call.
    pub fn is_deadline_exceeded(&self) -> bool {
        self.inner.reason == StopReason::DeadlineExceeded
    }

    /// Whether the context was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.inner.reason == StopReason::Cancelled
    }

    /// The stop as a rejection of the outcome taxonomy, where it is one: by the
    /// [retry budget](Strategy::RetryBudget), or by the [deadline](Strategy::Deadline)
    /// when no time was left for another attempt.
    ///
    /// ```
    /// use palisade_classify::Strategy;
    /// use palisade_context::Context;
    /// use palisade_retry::{RetryBudget, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let empty = RetryBudget::builder().retry_ratio(0.0).min_retries_per_sec(0).build().unwrap();
    /// let policy = RetryPolicy::builder().budget(empty).build().unwrap();
    /// let err = policy
    ///     .retry(&Context::background(), |_| async { Err::<(), _>("down") })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.rejection().unwrap().strategy(), Strategy::RetryBudget);
    /// # }
    /// ```
    pub fn rejection(&self) -> Option<Rejection> {
        match self.inner.reason {
            StopReason::BudgetExhausted => Some(Rejection::new(Strategy::RetryBudget)),
            StopReason::DeadlineExceeded if self.inner.cause.is_none() => {
                Some(Rejection::new(Strategy::Deadline))
            }
            _ => None,
        }
    }

    /// The same error with the inner error mapped.
    pub fn map_err<F, E2>(self, f: F) -> RetryError<E2>
    where
        F: FnOnce(E) -> E2,
    {
        let Inner {
            reason,
            attempts,
            error,
            outcome,
            cause,
        } = *self.inner;
        RetryError {
            inner: Box::new(Inner {
                reason,
                attempts,
                error: error.map(f),
                outcome,
                cause,
            }),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryError")
            .field("reason", &self.inner.reason)
            .field("attempts", &self.inner.attempts)
            .field("error", &self.inner.error)
            .field("outcome", &self.inner.outcome)
            .field("cause", &self.inner.cause)
            .finish()
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.inner.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "gave up after {} attempt{s}: {}",
            self.inner.attempts, self.inner.reason
        )?;
        if let Some(e) = &self.inner.error {
            write!(f, "; last error: {e}")?;
        } else if let Some(cause) = &self.inner.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.inner.error {
            Some(e) => Some(e),
            None => self
                .inner
                .cause
                .as_ref()
                .map(|c| c as &(dyn Error + 'static)),
        }
    }
}
