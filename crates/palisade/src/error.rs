//! The one error type of a pipeline.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use palisade_classify::{ClassifyError, Outcome, Panicked, Rejection, Strategy};
use palisade_context::Cause;

/// Which timeout of a pipeline ran out.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// One attempt took longer than the attempt timeout.
    Attempt,
    /// The whole execution, retries included, took longer than the total timeout.
    Total,
}

impl TimeoutKind {
    /// A short, stable name for logs and metric labels.
    pub const fn as_str(&self) -> &'static str {
        match self {
            TimeoutKind::Attempt => "attempt_timeout",
            TimeoutKind::Total => "total_timeout",
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Attempt => "attempt timeout",
            TimeoutKind::Total => "total timeout",
        })
    }
}

/// Why a [`Pipeline`](crate::Pipeline) execution failed: the call's own error, a
/// strategy's rejection, a timeout, a cancellation with its cause, a panic, or
/// retries exhausted with the attempt count and the last error.
///
/// The error is an opaque struct: ask it with the `is_*()` predicates and the
/// accessors. [`source()`](std::error::Error::source) keeps the chain (the call's
/// error, the cancellation cause, the last attempt's error), and
/// [`outcome()`](Self::outcome) gives its class in the taxonomy.
///
#[cfg_attr(feature = "classify", doc = "```")]
#[cfg_attr(not(feature = "classify"), doc = "```ignore")]
/// use palisade::{Error, classify::Outcome};
///
/// let e: Error<std::io::Error> = Error::inner(std::io::ErrorKind::ConnectionReset.into(), Outcome::transient());
/// assert!(e.is_inner());
/// assert!(e.outcome().is_retryable());
/// assert_eq!(e.inner_error().unwrap().kind(), std::io::ErrorKind::ConnectionReset);
/// ```
pub struct Error<E> {
    kind: Kind<E>,
    /// Where and how it happened: the dependency, the time taken and the
    /// attempts; filled in by the pipeline, on the failure path only.
    story: Option<Box<Story>>,
}

/// The context a pipeline gives its error.
#[derive(Clone, Debug, Default)]
struct Story {
    dependency: Option<Cow<'static, str>>,
    elapsed: Option<Duration>,
    attempts: Vec<Attempt>,
    /// Attempts left out of `attempts` between its first and its last ones.
    omitted: u32,
}

/// How many attempts a history keeps at each end: the first few and the last
/// few of a long execution.
const KEPT_AT_EACH_END: usize = 4;

/// One attempt of a failed execution, as the error's
/// [history](Error::history) keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// The attempt's number, from 1.
    pub number: u32,
    /// Its outcome in the taxonomy.
    pub outcome: Outcome,
    /// How it ended: the [`Error::kind_str`] of its error (`error`, `timeout`,
    /// `rejected`, `panicked`, ...), or `ok` for a result the classifier calls
    /// a failure (an HTTP 503).
    pub kind: &'static str,
    /// What the pipeline itself can say of it (a timeout, a rejection, a
    /// panic's message); `None` for the call's own error, which is kept whole
    /// only for the last attempt ([`Error::last_error`]).
    pub detail: Option<String>,
    /// How long it took, when the pipeline knows (its clock was read at its
    /// start: every attempt but a first attempt of a pipeline without a timeout).
    pub took: Option<Duration>,
}

impl Attempt {
    /// An attempt whose value the classifier called a failure.
    #[cfg_attr(not(feature = "retry"), allow(dead_code))]
    pub(crate) fn of_value(number: u32, outcome: Outcome, took: Option<Duration>) -> Attempt {
        Attempt {
            number,
            outcome,
            kind: "ok",
            detail: None,
            took,
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attempt {}: {} ({})",
            self.number, self.kind, self.outcome
        )?;
        if let Some(took) = self.took {
            write!(f, " after {took:?}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

enum Kind<E> {
    Inner {
        error: E,
        outcome: Outcome,
    },
    Rejected(Rejection),
    Timeout {
        kind: TimeoutKind,
        after: Duration,
    },
    Cancelled(Cause),
    Panicked(Panicked),
    Exhausted {
        attempts: u32,
        last: Box<Error<E>>,
        budget: bool,
    },
    Injected(Outcome),
    /// Boxed: the rarest kind is the largest, and every `Result` holding an
    /// error would carry its size.
    Fallback(Box<FallbackFailure<E>>),
}

/// A fallback tier that failed, and the error it was to replace.
struct FallbackFailure<E> {
    tier: Cow<'static, str>,
    error: BoxError,
    original: Error<E>,
}

pub use palisade_classify::BoxError;

impl<E> Error<E> {
    /// The call's own error, with the outcome its classifier gave it.
    pub fn inner(error: E, outcome: Outcome) -> Self {
        Error {
            story: None,
            kind: Kind::Inner { error, outcome },
        }
    }

    /// A strategy refused the call.
    pub fn rejected(rejection: Rejection) -> Self {
        Error {
            story: None,
            kind: Kind::Rejected(rejection),
        }
    }

    /// A timeout of the pipeline ran out after `after`.
    pub fn timeout(kind: TimeoutKind, after: Duration) -> Self {
        Error {
            story: None,
            kind: Kind::Timeout { kind, after },
        }
    }

    /// The caller's context was cancelled, or its deadline passed.
    pub fn cancelled(cause: Cause) -> Self {
        Error {
            story: None,
            kind: Kind::Cancelled(cause),
        }
    }

    /// The call panicked.
    pub fn panicked(panic: Panicked) -> Self {
        Error {
            story: None,
            kind: Kind::Panicked(panic),
        }
    }

    /// Every allowed attempt failed; `last` is the last attempt's error.
    pub fn exhausted(attempts: u32, last: Error<E>) -> Self {
        Self::exhausted_inner(attempts, last, false)
    }

    /// The retry budget refused another retry after `attempts`; `last` is the last
    /// attempt's error.
    pub fn budget_exhausted(attempts: u32, last: Error<E>) -> Self {
        Self::exhausted_inner(attempts, last, true)
    }

    fn exhausted_inner(attempts: u32, last: Error<E>, budget: bool) -> Self {
        // Keep the chain flat: the last error of an exhausted retry is never itself
        // an exhausted retry.
        let last = match last.kind {
            Kind::Exhausted { last, .. } => *last,
            _ => last,
        };
        Error {
            story: None,
            kind: Kind::Exhausted {
                attempts,
                last: Box::new(last),
                budget,
            },
        }
    }

    /// Whether the retry stopped because its budget had no retry left (then also
    /// [`is_retries_exhausted`](Self::is_retries_exhausted)).
    pub fn is_budget_exhausted(&self) -> bool {
        matches!(self.kind, Kind::Exhausted { budget: true, .. })
    }

    /// A fault injected by chaos, standing for `outcome`.
    pub fn injected(outcome: Outcome) -> Self {
        Error {
            story: None,
            kind: Kind::Injected(outcome),
        }
    }

    /// Whether this is a fault injected by chaos (see the `chaos` feature).
    pub fn is_injected(&self) -> bool {
        matches!(self.kind, Kind::Injected(_))
    }

    /// The same error, standing for `outcome` (chaos replacing an outcome).
    #[cfg(feature = "chaos")]
    pub(crate) fn with_outcome(self, outcome: Outcome) -> Self {
        match self.kind {
            Kind::Inner { error, .. } => Error::inner(error, outcome),
            Kind::Injected(_) => Error::injected(outcome),
            kind => Error {
                kind,
                story: self.story,
            },
        }
    }

    /// The fallback tier `tier` failed with `error` while replacing `original`.
    pub fn fallback_failed(
        tier: impl Into<Cow<'static, str>>,
        error: BoxError,
        original: Error<E>,
    ) -> Self {
        Error {
            story: None,
            kind: Kind::Fallback(Box::new(FallbackFailure {
                tier: tier.into(),
                error,
                original,
            })),
        }
    }

    /// Whether a fallback tier failed too (the pipeline's error is then the
    /// `source()`, and [`original`](Self::original) returns it).
    pub fn is_fallback_failed(&self) -> bool {
        matches!(self.kind, Kind::Fallback(_))
    }

    /// The name of the fallback tier that failed, if one did.
    pub fn fallback_tier(&self) -> Option<&str> {
        match &self.kind {
            Kind::Fallback(failure) => Some(&failure.tier),
            _ => None,
        }
    }

    /// The error of the fallback tier that failed, if one did.
    pub fn fallback_error(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        match &self.kind {
            Kind::Fallback(failure) => Some(&*failure.error),
            _ => None,
        }
    }

    /// The pipeline's own error: behind a failed fallback, the error it tried to
    /// replace; otherwise this error.
    pub fn original(&self) -> &Error<E> {
        match &self.kind {
            Kind::Fallback(failure) => &failure.original,
            _ => self,
        }
    }

    /// The error of the call itself (of the last attempt, when retries ran out).
    pub fn inner_error(&self) -> Option<&E> {
        match &self.kind {
            Kind::Inner { error, .. } => Some(error),
            Kind::Exhausted { last, .. } => last.inner_error(),
            Kind::Fallback(failure) => failure.original.inner_error(),
            _ => None,
        }
    }

    /// Alias of [`inner_error`](Self::inner_error).
    #[deprecated(since = "0.1.0", note = "use `inner_error`")]
    pub fn get_inner(&self) -> Option<&E> {
        self.inner_error()
    }

    /// Takes the error of the call itself (of the last attempt, when retries ran
    /// out); `Err(self)` when there is none.
    pub fn into_inner(self) -> Result<E, Self> {
        match self.kind {
            Kind::Inner { error, .. } => Ok(error),
            Kind::Exhausted {
                attempts,
                last,
                budget,
            } => match last.into_inner() {
                Ok(e) => Ok(e),
                Err(last) => Err(Error {
                    story: self.story,
                    kind: Kind::Exhausted {
                        attempts,
                        last: Box::new(last),
                        budget,
                    },
                }),
            },
            kind => Err(Error {
                kind,
                story: self.story,
            }),
        }
    }

    /// Whether this is the call's own error (not wrapped by an exhausted retry).
    pub fn is_inner(&self) -> bool {
        matches!(self.kind, Kind::Inner { .. })
    }

    /// Whether a strategy refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// The rejection, if a strategy refused the call.
    pub fn rejection(&self) -> Option<Rejection> {
        match &self.kind {
            Kind::Rejected(r) => Some(*r),
            _ => None,
        }
    }

    /// The strategy that refused the call, if one did.
    pub fn rejected_by(&self) -> Option<Strategy> {
        self.rejection().map(|r| r.strategy())
    }

    /// Whether the circuit breaker refused the call.
    pub fn is_breaker_open(&self) -> bool {
        self.rejected_by() == Some(Strategy::CircuitBreaker)
    }

    /// Whether an attempt or total timeout ran out.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout { .. })
    }

    /// Which timeout ran out, if one did.
    pub fn timeout_kind(&self) -> Option<TimeoutKind> {
        match &self.kind {
            Kind::Timeout { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether the caller's context was cancelled or its deadline passed.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.kind, Kind::Cancelled(_))
    }

    /// The cancellation cause, if the context was cancelled.
    pub fn cancel_cause(&self) -> Option<&Cause> {
        match &self.kind {
            Kind::Cancelled(c) => Some(c),
            _ => None,
        }
    }

    /// Whether the call panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panicked(_))
    }

    /// The panic, if the call panicked.
    pub fn panic(&self) -> Option<&Panicked> {
        match &self.kind {
            Kind::Panicked(p) => Some(p),
            _ => None,
        }
    }

    /// Whether every allowed attempt failed.
    pub fn is_retries_exhausted(&self) -> bool {
        matches!(self.kind, Kind::Exhausted { .. })
    }

    /// How many attempts ran before the retry gave up (`None` if it did not).
    pub fn attempts(&self) -> Option<u32> {
        match &self.kind {
            Kind::Exhausted { attempts, .. } => Some(*attempts),
            _ => None,
        }
    }

    /// The last attempt's error, when retries ran out.
    pub fn last_error(&self) -> Option<&Error<E>> {
        match &self.kind {
            Kind::Exhausted { last, .. } => Some(last),
            _ => None,
        }
    }

    /// The class of this error in the outcome taxonomy:
    ///
    /// | error | outcome |
    /// | --- | --- |
    /// | the call's error | what the classifier said |
    /// | rejected | `Rejected` (with which strategy and the retry-after hint) |
    /// | timeout | `Transient` (the request may have been delivered) |
    /// | cancelled | `Ignored` (the caller's choice, not the dependency's health) |
    /// | panicked | `Permanent` |
    /// | retries exhausted | the last attempt's outcome |
    /// | fallback failed | the original error's outcome |
    /// | injected by chaos | the outcome it stands for |
    pub fn outcome(&self) -> Outcome {
        match &self.kind {
            Kind::Inner { outcome, .. } => *outcome,
            Kind::Rejected(r) => Outcome::Rejected(*r),
            Kind::Timeout { .. } => Outcome::transient(),
            Kind::Cancelled(_) => Outcome::Ignored,
            Kind::Panicked(_) => Outcome::Permanent,
            Kind::Exhausted { last, .. } => last.outcome(),
            Kind::Fallback(failure) => failure.original.outcome(),
            Kind::Injected(outcome) => *outcome,
        }
    }

    /// The dependency (the pipeline's name) whose execution failed, when a
    /// pipeline made this error. A rejection (an open breaker, a full bulkhead,
    /// a rate limit) carries none, nor an elapsed time: it is the cheap answer
    /// of a protected dependency, and a story would allocate.
    pub fn dependency(&self) -> Option<&str> {
        self.story.as_ref()?.dependency.as_deref()
    }

    /// How long the execution ran before it failed, when the pipeline knows:
    /// it has a timeout or the `metrics` feature (so that its start was read
    /// anyway; the pipeline reads no clock for this alone).
    pub fn elapsed(&self) -> Option<Duration> {
        self.story.as_ref()?.elapsed
    }

    /// The attempts of an execution that retried or hedged, in order: the
    /// first and the last few of a long one (see
    /// [`history_omitted`](Self::history_omitted)). Empty for an execution of
    /// one attempt, whose error is the attempt's.
    pub fn history(&self) -> &[Attempt] {
        self.story.as_ref().map_or(&[], |s| &s.attempts)
    }

    /// How many attempts [`history`](Self::history) leaves out between its
    /// first and its last ones.
    pub fn history_omitted(&self) -> u32 {
        self.story.as_ref().map_or(0, |s| s.omitted)
    }

    /// The whole story on a few lines, as `{:#}` prints it, followed by a
    /// "caused by:" line for every error of the [`source`](StdError::source)
    /// chain:
    ///
    /// ```text
    /// users-api: gave up after 3 attempts (after 912ms)
    ///   attempt 1: timeout (transient failure) after 300ms: attempt timeout of 300ms elapsed
    ///   attempt 2: error (transient failure) after 2ms
    ///   attempt 3: ok (transient failure) after 5ms
    /// caused by: HTTP 503
    /// ```
    pub fn report(&self) -> Report<'_, E> {
        Report { error: self }
    }

    /// The dependency and the time taken, from the pipeline.
    pub(crate) fn set_context(&mut self, dependency: Cow<'static, str>, elapsed: Option<Duration>) {
        let story = self.story.get_or_insert_with(Box::default);
        story.dependency = Some(dependency);
        story.elapsed = elapsed;
    }

    /// The attempts, from the retry executor.
    #[cfg_attr(not(feature = "retry"), allow(dead_code))]
    pub(crate) fn set_history(&mut self, history: History) {
        let story = self.story.get_or_insert_with(Box::default);
        let (attempts, omitted) = history.into_parts();
        story.attempts = attempts;
        story.omitted = omitted;
    }

    /// This attempt's error as its history keeps it.
    #[cfg_attr(not(feature = "retry"), allow(dead_code))]
    pub(crate) fn attempt(&self, number: u32, took: Option<Duration>) -> Attempt {
        let detail = match &self.kind {
            Kind::Inner { .. } | Kind::Exhausted { .. } | Kind::Fallback(_) => None,
            Kind::Rejected(r) => Some(r.to_string()),
            Kind::Timeout { kind, after } => Some(format!("{kind} of {after:?} elapsed")),
            Kind::Cancelled(c) => Some(c.to_string()),
            Kind::Panicked(p) => Some(p.to_string()),
            Kind::Injected(o) => Some(format!("fault injected by chaos ({o})")),
        };
        Attempt {
            number,
            outcome: self.outcome(),
            kind: self.kind_str(),
            detail,
            took,
        }
    }

    /// A short label of the kind, for logs, alerts and metric labels: `error`,
    /// `rejected`, `timeout`, `cancelled`, `panicked`, `retries_exhausted`,
    /// `fallback_failed` or `injected`. These values are stable: a new kind may
    /// be added, an existing one is never renamed.
    pub fn kind_str(&self) -> &'static str {
        match &self.kind {
            Kind::Inner { .. } => "error",
            Kind::Rejected(_) => "rejected",
            Kind::Timeout { .. } => "timeout",
            Kind::Cancelled(_) => "cancelled",
            Kind::Panicked(_) => "panicked",
            Kind::Exhausted { .. } => "retries_exhausted",
            Kind::Fallback(_) => "fallback_failed",
            Kind::Injected(_) => "injected",
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    /// One short line; with `{:#}`, the dependency, the time taken and one line
    /// per attempt as well (the whole [`report`](Error::report) but its
    /// "caused by:" lines, which need the error's `source()` chain).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.story_lines(f);
        }
        self.line(f)
    }
}

impl<E: fmt::Display> Error<E> {
    fn story_lines(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dependency) = self.dependency() {
            write!(f, "{dependency}: ")?;
        }
        self.line(f)?;
        if let Some(elapsed) = self.elapsed() {
            write!(f, " (after {elapsed:?})")?;
        }
        let history = self.history();
        let split = history
            .iter()
            .position(|a| a.number > KEPT_AT_EACH_END as u32)
            .filter(|_| self.history_omitted() > 0);
        for (i, attempt) in history.iter().enumerate() {
            if Some(i) == split {
                write!(f, "\n  ... {} attempts more", self.history_omitted())?;
            }
            write!(f, "\n  {attempt}")?;
        }
        Ok(())
    }

    fn line(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { error, .. } => error.fmt(f),
            Kind::Rejected(r) => fmt::Display::fmt(r, f),
            Kind::Timeout { kind, after } => write!(f, "{kind} of {after:?} elapsed"),
            // The cause and the last error are the `source()`: reporters that walk
            // the chain print them once.
            Kind::Cancelled(_) => f.write_str("the call was cancelled"),
            Kind::Panicked(p) => fmt::Display::fmt(p, f),
            Kind::Exhausted {
                attempts, budget, ..
            } => {
                let plural = if *attempts == 1 { "" } else { "s" };
                write!(f, "gave up after {attempts} attempt{plural}")?;
                if *budget {
                    f.write_str(" (the retry budget is exhausted)")?;
                }
                Ok(())
            }
            Kind::Fallback(failure) => {
                write!(f, "fallback `{}` failed: {}", failure.tier, failure.error)
            }
            Kind::Injected(outcome) => write!(f, "fault injected by chaos ({outcome})"),
        }
    }
}

/// The whole story of an [`Error`], made by [`Error::report`]: its `{:#}`
/// lines, then one "caused by:" line for every error of its `source()` chain.
pub struct Report<'a, E> {
    error: &'a Error<E>,
}

impl<E: StdError + 'static> fmt::Display for Report<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)?;
        let mut source = StdError::source(self.error);
        while let Some(cause) = source {
            write!(f, "\ncaused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl<E: StdError + 'static> fmt::Debug for Report<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The attempts of one execution, bounded: the first and the last
/// [`KEPT_AT_EACH_END`], and a count of those between.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "retry"), allow(dead_code))]
pub(crate) struct History {
    first: Vec<Attempt>,
    last: std::collections::VecDeque<Attempt>,
    omitted: u32,
}

#[cfg_attr(not(feature = "retry"), allow(dead_code))]
impl History {
    pub(crate) fn push(&mut self, attempt: Attempt) {
        if self.first.len() < KEPT_AT_EACH_END {
            self.first.push(attempt);
            return;
        }
        if self.last.len() == KEPT_AT_EACH_END {
            self.last.pop_front();
            self.omitted += 1;
        }
        self.last.push_back(attempt);
    }

    fn into_parts(self) -> (Vec<Attempt>, u32) {
        let mut attempts = self.first;
        attempts.extend(self.last);
        attempts.sort_by_key(|a| a.number);
        (attempts, self.omitted)
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { error, outcome } => f
                .debug_struct("Inner")
                .field("error", error)
                .field("outcome", outcome)
                .finish(),
            Kind::Rejected(r) => f.debug_tuple("Rejected").field(r).finish(),
            Kind::Timeout { kind, after } => f
                .debug_struct("Timeout")
                .field("kind", kind)
                .field("after", after)
                .finish(),
            Kind::Cancelled(c) => f.debug_tuple("Cancelled").field(c).finish(),
            Kind::Panicked(p) => f.debug_tuple("Panicked").field(p).finish(),
            Kind::Injected(o) => f.debug_tuple("Injected").field(o).finish(),
            Kind::Exhausted {
                attempts,
                last,
                budget,
            } => f
                .debug_struct("RetriesExhausted")
                .field("attempts", attempts)
                .field("last", last)
                .field("budget", budget)
                .finish(),
            Kind::Fallback(failure) => f
                .debug_struct("FallbackFailed")
                .field("tier", &failure.tier)
                .field("error", &failure.error)
                .field("original", &failure.original)
                .finish(),
        }
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            // Transparent: the call's error is this error.
            Kind::Inner { error, .. } => error.source(),
            Kind::Rejected(_) | Kind::Timeout { .. } | Kind::Panicked(_) | Kind::Injected(_) => {
                None
            }
            Kind::Cancelled(c) => Some(c),
            Kind::Exhausted { last, .. } => Some(&**last),
            Kind::Fallback(failure) => Some(&failure.original),
        }
    }
}

impl<E> ClassifyError for Error<E> {
    fn outcome(&self) -> Outcome {
        Error::outcome(self)
    }
}

impl<E> From<Rejection> for Error<E> {
    fn from(r: Rejection) -> Self {
        Error::rejected(r)
    }
}

/// A pipeline setting that was refused, naming the field, the value given and what
/// it allows (the shape every Palisade crate shares).
///
/// Building a pipeline, or loading one from configuration, never panics on a bad
/// value and never clamps it silently: it returns this error. Its field is a dotted
/// path (`pipelines.billing.retry.backoff.max_attempts`).
pub use palisade_clock::ConfigError;
