//! The retry policy and its builder.

use std::fmt;

use palisade_backoff::Backoff;
use palisade_classify::Idempotency;
use palisade_clock::{Clock, DefaultClock};
use palisade_context::Context;
use serde::Deserialize;

use crate::sync::{Arc, AtomicU64, Ordering};
use crate::{BudgetSnapshot, ConfigError, Hedging, RetryBudget};

/// The most attempts (the first included) a policy's schedule may make when it
/// has no [`max_elapsed`](palisade_backoff::Backoff::max_elapsed): 100. At the
/// default 10 s cap on one delay that is over 16 minutes of retrying one call,
/// past anything a caller waits for; a larger count is almost always a mistake
/// (`u32::MAX` for "unlimited"). A schedule with a maximum elapsed time may have
/// any count: the time bounds it.
pub const MAX_ATTEMPTS: u32 = 100;

/// What a retry does when an outer retry already retries the same call (the
/// context is marked with [`mark_retrying`]).
///
/// Nested retries multiply: three attempts inside three attempts are nine calls to a
/// dependency that is already failing.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Nested {
    /// Make one attempt and leave retrying to the outer retry: the default, because
    /// the outer retry already owns the schedule, budget and deadline.
    #[default]
    SingleAttempt,
    /// Retry anyway (attempts multiply).
    Retry,
}

/// The marker [`mark_retrying`] puts in a context.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryMarker {
    _private: (),
}

/// A child of `ctx` marked as "an outer retry retries this call", so that a retry
/// further in obeys its [`Nested`] setting. A pipeline that calls another pipeline
/// passes the marked context down; the mark costs one small allocation per call, so
/// the executor does not add it on its own.
///
/// ```
/// use palisade_context::Context;
/// use palisade_retry::{is_retrying, mark_retrying};
///
/// let ctx = Context::background();
/// assert!(!is_retrying(&ctx));
/// assert!(is_retrying(&mark_retrying(&ctx)));
/// ```
pub fn mark_retrying(ctx: &Context) -> Context {
    ctx.with_value(RetryMarker { _private: () })
}

/// Whether an outer retry marked `ctx` (see [`mark_retrying`]).
#[inline]
pub fn is_retrying(ctx: &Context) -> bool {
    ctx.get::<RetryMarker>().is_some()
}

/// A retry policy: the schedule, an optional shared budget, optional hedging, the
/// retry-safety settings, and counters. Cheap to clone; clones share the budget,
/// the hedging latencies and the counters.
///
/// Run calls with [`RetryPolicy::retry`] (every error transient) or
/// [`RetryPolicy::retry_with`] (any [`Classify`](palisade_classify::Classify)).
pub struct RetryPolicy<C: Clock = DefaultClock> {
    pub(crate) backoff: Backoff,
    pub(crate) budget: Option<RetryBudget<C>>,
    pub(crate) hedging: Option<Hedging>,
    pub(crate) idempotency: Idempotency,
    pub(crate) allow_non_idempotent: bool,
    pub(crate) nested: Nested,
    pub(crate) clock: C,
    pub(crate) stats: Arc<Stats>,
}

impl<C: Clock> Clone for RetryPolicy<C> {
    fn clone(&self) -> Self {
        RetryPolicy {
            backoff: self.backoff,
            budget: self.budget.clone(),
            hedging: self.hedging.clone(),
            idempotency: self.idempotency,
            allow_non_idempotent: self.allow_non_idempotent,
            nested: self.nested,
            clock: self.clock.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl Default for RetryPolicy {
    /// [`Backoff::default`] (exponential from 100 ms, full jitter, 3 attempts), no
    /// budget, no hedging, an idempotent operation.
    fn default() -> Self {
        RetryPolicy::builder()
            .build()
            .expect("the default retry policy is valid")
    }
}

impl RetryPolicy {
    /// A builder on the default clock.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::with_clock(DefaultClock::default())
    }
}

impl<C: Clock> RetryPolicy<C> {
    /// The schedule.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<&RetryBudget<C>> {
        self.budget.as_ref()
    }

    /// The hedging, if any.
    pub fn hedging(&self) -> Option<&Hedging> {
        self.hedging.as_ref()
    }

    /// The counters of every call through this policy and its clones.
    pub fn snapshot(&self) -> RetrySnapshot {
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RetrySnapshot {
            retries: load(&s.retries),
            hedges: load(&s.hedges),
            hedges_won: load(&s.hedges_won),
            rejected_by_budget: load(&s.rejected_by_budget),
            exhausted: load(&s.exhausted),
            deadline_exceeded: load(&s.deadline_exceeded),
            cancelled: load(&s.cancelled),
            budget: self.budget.as_ref().map(RetryBudget::snapshot),
        }
    }
}

impl<C: Clock> fmt::Debug for RetryPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .field("hedging", &self.hedging)
            .field("idempotency", &self.idempotency)
            .field("allow_non_idempotent", &self.allow_non_idempotent)
            .field("nested", &self.nested)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Counters, touched only off the success path.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) retries: AtomicU64,
    pub(crate) hedges: AtomicU64,
    pub(crate) hedges_won: AtomicU64,
    pub(crate) rejected_by_budget: AtomicU64,
    pub(crate) exhausted: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    pub(crate) cancelled: AtomicU64,
}

impl Stats {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters of a [`RetryPolicy`] since it was built.
#[derive(Copy, Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// Retries started (after a backoff sleep).
    pub retries: u64,
    /// Hedges started.
    pub hedges: u64,
    /// Calls a hedge answered first.
    pub hedges_won: u64,
    /// Retries and hedges the budget refused (calls that ended rejected by the
    /// budget, and hedges not started).
    pub rejected_by_budget: u64,
    /// Calls that ran out of attempts or elapsed time.
    pub exhausted: u64,
    /// Calls the context's deadline stopped.
    pub deadline_exceeded: u64,
    /// Calls the context's cancellation stopped.
    pub cancelled: u64,
    /// The budget's counters, if the policy has a budget.
    pub budget: Option<BudgetSnapshot>,
}

/// Builds a [`RetryPolicy`]; [`build`](RetryPolicyBuilder::build) validates.
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct RetryPolicyBuilder<C: Clock = DefaultClock> {
    backoff: Backoff,
    budget: Option<RetryBudget<C>>,
    hedging: Option<Hedging>,
    idempotency: Idempotency,
    allow_non_idempotent: bool,
    nested: Nested,
    clock: C,
}

impl<C: Clock> RetryPolicyBuilder<C> {
    /// A builder whose sleeps and elapsed times use `clock`. The context's deadline
    /// is always on the tokio clock's axis; use a clock that shares it
    /// ([`TokioClock`](palisade_clock::TokioClock), the default, or
    /// [`MonotonicClock`](palisade_clock::MonotonicClock)) when contexts have
    /// deadlines.
    pub fn with_clock(clock: C) -> Self {
        RetryPolicyBuilder {
            backoff: Backoff::default(),
            budget: None,
            hedging: None,
            idempotency: Idempotency::Idempotent,
            allow_non_idempotent: false,
            nested: Nested::default(),
            clock,
        }
    }

    /// The delay schedule, its attempts and elapsed caps (default
    /// [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A retry budget, usually shared by every policy calling one dependency
    /// (default none: retries limited by the schedule only).
    pub fn budget(mut self, budget: RetryBudget<C>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Hedging (default none).
    pub fn hedging(mut self, hedging: Hedging) -> Self {
        self.hedging = Some(hedging);
        self
    }

    /// Whether the operation is idempotent (default idempotent: most calls that
    /// are retried are reads).
    pub fn idempotency(mut self, idempotency: Idempotency) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Whether to retry (and hedge) a non-idempotent operation even when the
    /// request may have reached the server (default false: doing the work twice is
    /// worse than failing).
    pub fn allow_non_idempotent(mut self, allow: bool) -> Self {
        self.allow_non_idempotent = allow;
        self
    }

    /// What to do under an outer retry (default [`Nested::SingleAttempt`]).
    pub fn nested(mut self, nested: Nested) -> Self {
        self.nested = nested;
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    ///
    /// `hedging` on a non-idempotent operation without `allow_non_idempotent`: a
    /// hedge sends the request a second time while the first may be in progress.
    /// `backoff.max_attempts` above [`MAX_ATTEMPTS`] on a schedule without a
    /// maximum elapsed time.
    ///
    /// A schedule whose delays are all zero (a constant schedule of 0) is accepted
    /// with a warning: failed attempts are retried at once.
    pub fn build(self) -> Result<RetryPolicy<C>, ConfigError> {
        if self.backoff.max_attempts() > MAX_ATTEMPTS && self.backoff.max_elapsed().is_none() {
            return Err(ConfigError::new(
                "backoff.max_attempts",
                self.backoff.max_attempts(),
                format!("from 1 to {MAX_ATTEMPTS}, or any number with backoff.max_elapsed set"),
            ));
        }
        if self.backoff.max_delay().is_zero() && self.backoff.max_attempts() > 1 {
            tracing::warn!(
                max_attempts = self.backoff.max_attempts(),
                "retry policy: every backoff delay is zero, so failed attempts are retried at once"
            );
        }
        if self.hedging.is_some()
            && self.idempotency == Idempotency::NonIdempotent
            && !self.allow_non_idempotent
        {
            return Err(ConfigError::new(
                "hedging",
                "set",
                "only on an idempotent operation, or with allow_non_idempotent",
            ));
        }
        Ok(RetryPolicy {
            backoff: self.backoff,
            budget: self.budget,
            hedging: self.hedging,
            idempotency: self.idempotency,
            allow_non_idempotent: self.allow_non_idempotent,
            nested: self.nested,
            clock: self.clock,
            stats: Arc::new(Stats::default()),
        })
    }
}
