//! The retry loop.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::FusedFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use palisade_backoff::Delays;
use palisade_classify::{AnyErrorIsTransient, Classify, Outcome, retry_allowed};
use palisade_clock::{Clock, Timestamp};
use palisade_context::{Cause, Context};
use tracing::Instrument;

use crate::policy::Stats;
use crate::{Nested, RetryError, RetryPolicy, StopReason, is_retrying};

/// What the operation learns about the attempt it is asked to make.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    number: u32,
    hedge: bool,
}

impl Attempt {
    /// The attempt's number, from 1, counting retries and hedges in the order they
    /// start.
    #[inline]
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this is the first attempt of the call.
    #[inline]
    pub fn is_first(&self) -> bool {
        self.number == 1
    }

    /// Whether this attempt is a hedge, running in parallel with an earlier one.
    #[inline]
    pub fn is_hedge(&self) -> bool {
        self.hedge
    }
}

/// Runs `op` under `policy`, every error transient (see [`RetryPolicy::retry`]).
///
/// ```
/// use palisade_context::Context;
/// use palisade_retry::{RetryPolicy, retry};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy = RetryPolicy::default();
/// let ctx = Context::background();
/// let value = retry(&policy, &ctx, |attempt| async move {
///     if attempt.number() < 3 { Err("flaky") } else { Ok(attempt.number()) }
/// })
/// .await
/// .unwrap();
/// assert_eq!(value, 3);
/// # }
/// ```
pub fn retry<'a, C, T, E, F, Fut>(
    policy: &'a RetryPolicy<C>,
    ctx: &'a Context,
    op: F,
) -> impl Future<Output = Result<T, RetryError<E>>> + 'a
where
    C: Clock,
    F: FnMut(Attempt) -> Fut + 'a,
    Fut: Future<Output = Result<T, E>> + 'a,
    T: 'a,
    E: 'a,
{
    policy.retry_with(ctx, &AnyErrorIsTransient, op)
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Transient(_) => "transient",
        Outcome::Permanent => "permanent",
        Outcome::Ignored => "ignored",
        Outcome::Rejected(_) => "rejected",
        _ => "other",
    }
}

/// Why the context ended, as a stop reason.
fn context_reason(cause: Option<&Cause>) -> StopReason {
    match cause {
        Some(c) if c.is_deadline_exceeded() => StopReason::DeadlineExceeded,
        _ => StopReason::Cancelled,
    }
}

impl<C: Clock> RetryPolicy<C> {
    /// Runs `op` until it succeeds or retrying stops, with every error transient
    /// ([`AnyErrorIsTransient`]). See [`retry_with`](RetryPolicy::retry_with).
    pub fn retry<'a, T, E, F, Fut>(
        &'a self,
        ctx: &'a Context,
        op: F,
    ) -> impl Future<Output = Result<T, RetryError<E>>> + 'a
    where
        F: FnMut(Attempt) -> Fut + 'a,
        Fut: Future<Output = Result<T, E>> + 'a,
        T: 'a,
        E: 'a,
    {
        self.retry_with(ctx, &AnyErrorIsTransient, op)
    }

    /// Runs `op` until it succeeds or retrying stops, deciding by `classifier`:
    ///
    /// - a **transient** failure is retried after the schedule's next delay, or its
    ///   retry-after hint clamped to the schedule's maximum delay; unless the
    ///   operation is not idempotent and the request may have been delivered (and
    ///   the policy does not allow it), or an outer retry already retries
    ///   ([`Nested`]);
    /// - anything else (success, permanent, ignored, rejected) ends the call.
    ///
    /// **Deadline-aware**: it never sleeps past the context's deadline and does not
    /// start an attempt that cannot start before it; it stops with the last error
    /// and [`StopReason::DeadlineExceeded`]. Cancellation during a sleep stops at
    /// once. The attempt itself is not interrupted: hand it the context (an attempt
    /// timeout, [`Context::run`]).
    ///
    /// **Max elapsed** (the schedule's) counts from the start of the call, the
    /// attempts' own time included.
    ///
    /// A **budget** gets a deposit for the call and a withdrawal for each retry and
    /// hedge; a refused retry ends the call with [`StopReason::BudgetExhausted`].
    ///
    /// **Hedging**, if configured: an attempt still running after the hedge delay
    /// gets a sibling (with a zero delay, every hedge starts with the first
    /// attempt); the first success or ignored result wins and the others are
    /// dropped. A failure waits for the attempts still running; when all of them
    /// fail, the round ends with the first failure that is not transient if there
    /// is one (so a permanent failure is not retried), else the last transient one
    /// (see [`Hedging`](crate::Hedging)). A context marked by an outer retry
    /// ([`Nested::SingleAttempt`]) makes one attempt: no hedges.
    ///
    /// A result that is `Ok` but classified as a failure is returned as `Ok` once
    /// retrying stops; it is dropped before the backoff sleep, so if the context
    /// ends the call during that sleep, the call fails with
    /// [`StopReason::Cancelled`] or [`StopReason::DeadlineExceeded`], the last
    /// outcome and no [`last_error`](RetryError::last_error). A failed `Err` is kept
    /// through the sleep (it is the last error if the call stops there) and dropped
    /// before the next attempt starts.
    ///
    /// **Costs**: without hedging, the first attempt runs inside this future, and
    /// its success costs no allocation, no lock and no random number; it reads the
    /// clock only if the schedule has a maximum elapsed time. A transient failure
    /// moves the rest of the call (the schedule, the sleeps, the later rounds) into
    /// one allocation; so does a call with hedging, from its start, and a percentile
    /// hedge delay reads the clock around each attempt. A [`RetryError`] is one
    /// allocation.
    pub async fn retry_with<T, E, K, F, Fut>(
        &self,
        ctx: &Context,
        classifier: &K,
        mut op: F,
    ) -> Result<T, RetryError<E>>
    where
        K: Classify<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if ctx.is_cancelled() {
            return Err(self.stop_on_context(ctx, 0, None, None));
        }
        let start = self.backoff.max_elapsed().map(|_| self.clock.now());
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        // Without hedging, the first attempt is polled right here, so that the future
        // of a call that succeeds at once holds little more than the operation's own
        // future; the retry loop's state (the schedule, the sleep, the hedges) is
        // built on the heap, after a transient failure or for a hedged call.
        // A context an outer retry marks makes one attempt (see `Nested`): no
        // hedges either. Only a hedged policy looks the marker up here.
        let hedged =
            self.hedging.is_some() && !(self.nested == Nested::SingleAttempt && is_retrying(ctx));
        let first = if !hedged {
            let attempt = Attempt {
                number: 1,
                hedge: false,
            };
            let (result, outcome) = if spans_enabled() {
                instrumented_attempt(classifier, op(attempt), attempt, Duration::ZERO).await
            } else {
                let result = op(attempt).await;
                let outcome = classifier.classify(&result);
                // Decided here too, so that a success returns straight away.
                if !matches!(outcome, Outcome::Transient(_)) {
                    return finish(result, outcome, 1, StopReason::NotRetryable);
                }
                (result, outcome)
            };
            if !matches!(outcome, Outcome::Transient(_)) {
                return finish(result, outcome, 1, StopReason::NotRetryable);
            }
            Some((result, outcome))
        } else {
            None
        };
        Box::pin(self.retry_loop(ctx, classifier, op, start, first)).await
    }

    /// The retry loop: runs the first round unless `first` has its result, then
    /// decides whether and when to retry, sleeps, and runs the next rounds.
    async fn retry_loop<T, E, K, F, Fut>(
        &self,
        ctx: &Context,
        classifier: &K,
        mut op: F,
        start: Option<Timestamp>,
        first: Option<(Result<T, E>, Outcome)>,
    ) -> Result<T, RetryError<E>>
    where
        K: Classify<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut state = CallState {
            attempts: 0,
            rounds: 0,
            hedges: 0,
            delay: Duration::ZERO,
        };
        let (mut result, mut outcome) = match first {
            Some(first) => {
                state.attempts = 1;
                state.rounds = 1;
                first
            }
            None => self.round(ctx, classifier, &mut op, &mut state).await,
        };
        let mut delays: Delays = self.backoff.iter();
        loop {
            let attempts = state.attempts;
            let Outcome::Transient(transient) = outcome else {
                return finish(result, outcome, attempts, StopReason::NotRetryable);
            };
            if self.nested == Nested::SingleAttempt && is_retrying(ctx) {
                return finish(result, outcome, attempts, StopReason::OuterRetry);
            }
            if !retry_allowed(
                self.idempotency,
                transient.delivery(),
                self.allow_non_idempotent,
            ) {
                return finish(result, outcome, attempts, StopReason::NotSafe);
            }
            let Some(mut delay) = delays.next() else {
                Stats::bump(&self.stats.exhausted);
                let reason = if state.rounds >= self.backoff.max_attempts() {
                    StopReason::AttemptsExhausted
                } else {
                    StopReason::ElapsedExhausted
                };
                return finish(result, outcome, attempts, reason);
            };
            if let Some(hint) = transient.retry_after() {
                delay = hint.min(self.backoff.max_delay());
            }
            if let (Some(start), Some(max)) = (start, self.backoff.max_elapsed()) {
                if self.clock.now().saturating_duration_since(start) + delay > max {
                    Stats::bump(&self.stats.exhausted);
                    return finish(result, outcome, attempts, StopReason::ElapsedExhausted);
                }
            }
            if ctx.is_cancelled() {
                let cause = ctx.cause();
                self.count_context_stop(cause.as_ref());
                return finish(result, outcome, attempts, context_reason(cause.as_ref()))
                    .map_err(|e| e.with_cause(cause));
            }
            if ctx.remaining().is_some_and(|left| left <= delay) {
                tracing::debug!(
                    attempts,
                    delay_ms = delay.as_millis() as u64,
                    "retry: no time left before the deadline"
                );
                Stats::bump(&self.stats.deadline_exceeded);
                return finish(result, outcome, attempts, StopReason::DeadlineExceeded);
            }
            if let Some(budget) = &self.budget {
                if !budget.try_withdraw() {
                    tracing::debug!(attempts, "retry: rejected by the retry budget");
                    Stats::bump(&self.stats.rejected_by_budget);
                    return finish(result, outcome, attempts, StopReason::BudgetExhausted);
                }
            }
            tracing::debug!(
                attempts,
                delay_ms = delay.as_millis() as u64,
                "retry: sleeping before the next attempt"
            );
            // A discarded `Ok` (a response and its body) goes before the sleep; an
            // error is kept through it, to be the last error if the context ends
            // the call there, and goes before the next round.
            let last_error = result.err();
            if !self.sleep(ctx, delay).await {
                let cause = ctx.cause();
                self.count_context_stop(cause.as_ref());
                let reason = context_reason(cause.as_ref());
                return Err(
                    RetryError::new(reason, attempts, last_error, Some(outcome)).with_cause(cause)
                );
            }
            drop(last_error);
            Stats::bump(&self.stats.retries);
            state.delay = delay;
            (result, outcome) = self.round(ctx, classifier, &mut op, &mut state).await;
        }
    }

    fn count_context_stop(&self, cause: Option<&Cause>) {
        match context_reason(cause) {
            StopReason::DeadlineExceeded => Stats::bump(&self.stats.deadline_exceeded),
            _ => Stats::bump(&self.stats.cancelled),
        }
    }

    fn stop_on_context<E>(
        &self,
        ctx: &Context,
        attempts: u32,
        error: Option<E>,
        outcome: Option<Outcome>,
    ) -> RetryError<E> {
        let cause = ctx.cause();
        self.count_context_stop(cause.as_ref());
        RetryError::new(context_reason(cause.as_ref()), attempts, error, outcome).with_cause(cause)
    }

    /// Sleeps for `delay` unless the context ends first; `false` if it did.
    async fn sleep(&self, ctx: &Context, delay: Duration) -> bool {
        let mut sleep = pin!(self.clock.sleep(delay));
        let mut cancelled = pin!(ctx.cancelled());
        poll_fn(|cx| {
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            sleep.as_mut().poll(cx).map(|()| true)
        })
        .await
    }

    /// One attempt, with its hedges if hedging is on: the result that decides.
    async fn round<T, E, K, F, Fut>(
        &self,
        ctx: &Context,
        classifier: &K,
        op: &mut F,
        state: &mut CallState,
    ) -> (Result<T, E>, Outcome)
    where
        K: Classify<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        state.rounds += 1;
        state.attempts += 1;
        let first = Attempt {
            number: state.attempts,
            hedge: false,
        };
        let Some(hedging) = &self.hedging else {
            if spans_enabled() {
                return instrumented_attempt(classifier, op(first), first, state.delay).await;
            }
            let result = op(first).await;
            let outcome = classifier.classify(&result);
            return (result, outcome);
        };
        let span = attempt_span(first, state.delay);
        self.hedged_round(ctx, classifier, op, state, hedging, first, span)
            .await
    }

    /// A round with hedges: the primary attempt, and a hedge each time the hedge
    /// delay passes with the round undecided (all of them at once with a zero
    /// delay). The first accepted result wins; failures wait for the others (see
    /// [`Hedging`](crate::Hedging)).
    #[allow(clippy::too_many_arguments)]
    async fn hedged_round<T, E, K, F, Fut>(
        &self,
        ctx: &Context,
        classifier: &K,
        op: &mut F,
        state: &mut CallState,
        hedging: &crate::Hedging,
        first: Attempt,
        span: tracing::Span,
    ) -> (Result<T, E>, Outcome)
    where
        K: Classify<T, E> + ?Sized,
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let track = hedging.tracks_latency();
        let hedge_delay = hedging.current_delay();
        let primary_start = self.now_if(track);
        let mut primary = pin!(
            op(first)
                .instrument(span.clone())
                .map(|r| (r, span, false))
                .fuse()
        );
        let mut hedges = FuturesUnordered::new();
        if hedging.is_parallel() {
            // Parallel mode: every hedge starts with the primary.
            while state.hedges < hedging.max_hedges() {
                match self.start_hedge(ctx, op, state, hedge_delay, track) {
                    Some(hedge) => hedges.push(hedge),
                    None => state.hedges = hedging.max_hedges(),
                }
            }
        }
        let mut timer = pin!(self.clock.sleep(hedge_delay));
        // The failure the round ends with if no attempt is accepted: the first one
        // that is not transient, else the last transient one.
        let mut failed: Option<(Result<T, E>, Outcome)> = None;
        poll_fn(|cx| {
            loop {
                let mut done = None;
                if !primary.is_terminated() {
                    if let Poll::Ready(r) = primary.as_mut().poll(cx) {
                        done = Some((r, primary_start));
                    }
                }
                if done.is_none() {
                    if let Poll::Ready(Some(r)) = hedges.poll_next_unpin(cx) {
                        done = Some(r);
                    }
                }
                if let Some(((result, span, hedge), started)) = done {
                    let outcome = classifier.classify(&result);
                    record_outcome(&span, &outcome);
                    if accepted(&outcome) {
                        if outcome.is_success() && track {
                            hedging.record(self.clock.now().saturating_duration_since(started));
                        }
                        if hedge {
                            Stats::bump(&self.stats.hedges_won);
                        }
                        // Returning drops the other attempts, which cancels them.
                        return Poll::Ready((result, outcome));
                    }
                    if failed.as_ref().is_none_or(|(_, o)| o.is_retryable()) {
                        failed = Some((result, outcome));
                    }
                    continue;
                }
                if primary.is_terminated() && hedges.is_empty() {
                    let failed = failed.take().expect("a finished round has a result");
                    return Poll::Ready(failed);
                }
                if state.hedges < hedging.max_hedges() && timer.as_mut().poll(cx).is_ready() {
                    match self.start_hedge(ctx, op, state, hedge_delay, track) {
                        Some(hedge) => {
                            hedges.push(hedge);
                            timer.set(self.clock.sleep(hedge_delay));
                        }
                        None => state.hedges = hedging.max_hedges(),
                    }
                    continue;
                }
                return Poll::Pending;
            }
        })
        .await
    }

    /// The clock's time if `track`, else zero (no clock read).
    #[inline]
    fn now_if(&self, track: bool) -> Timestamp {
        if track {
            self.clock.now()
        } else {
            Timestamp::ZERO
        }
    }

    /// Starts a hedge if the context is live and the budget has a retry for it:
    /// the attempt's future, in its span, with its start time.
    fn start_hedge<T, E, F, Fut>(
        &self,
        ctx: &Context,
        op: &mut F,
        state: &mut CallState,
        hedge_delay: Duration,
        track: bool,
    ) -> Option<impl Future<Output = HedgeResult<T, E>> + use<T, E, F, Fut, C>>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if ctx.is_cancelled() {
            return None;
        }
        if let Some(budget) = &self.budget {
            if !budget.try_withdraw() {
                tracing::debug!("hedge: rejected by the retry budget");
                Stats::bump(&self.stats.rejected_by_budget);
                return None;
            }
        }
        state.hedges += 1;
        state.attempts += 1;
        Stats::bump(&self.stats.hedges);
        let attempt = Attempt {
            number: state.attempts,
            hedge: true,
        };
        let span = attempt_span(attempt, hedge_delay);
        let started = self.now_if(track);
        Some(
            op(attempt)
                .instrument(span.clone())
                .map(move |r| ((r, span, true), started)),
        )
    }
}

/// A finished attempt of a hedged round: its result, span, whether it was a hedge,
/// and when it started.
type HedgeResult<T, E> = ((Result<T, E>, tracing::Span, bool), Timestamp);

/// Whether a result of a hedged round wins it: a success or an ignored outcome
/// (an answer, such as a 404). Failures (transient or permanent) and rejections
/// wait for the attempts still running.
#[inline]
fn accepted(outcome: &Outcome) -> bool {
    !outcome.is_failure() && !matches!(outcome, Outcome::Rejected(_))
}

/// The result of a call that stopped after `attempts` attempts: a last `Ok` is
/// returned as it is (an `Ok` classified as a failure), a last `Err` in a
/// [`RetryError`] that says why retrying stopped.
#[inline]
fn finish<T, E>(
    result: Result<T, E>,
    outcome: Outcome,
    attempts: u32,
    reason: StopReason,
) -> Result<T, RetryError<E>> {
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(stopped(reason, attempts, e, outcome)),
    }
}

/// The error of a call that stopped on a failure; out of line, so that the
/// success path only moves the value.
#[cold]
#[inline(never)]
fn stopped<E>(reason: StopReason, attempts: u32, error: E, outcome: Outcome) -> RetryError<E> {
    RetryError::new(reason, attempts, Some(error), Some(outcome))
}

/// One attempt in its `retry.attempt` span, the outcome recorded on the span.
async fn instrumented_attempt<T, E, K, Fut>(
    classifier: &K,
    attempt: Fut,
    number: Attempt,
    delay: Duration,
) -> (Result<T, E>, Outcome)
where
    K: Classify<T, E> + ?Sized,
    Fut: Future<Output = Result<T, E>>,
{
    let span = attempt_span(number, delay);
    let mut attempt = pin!(attempt);
    let result = poll_fn(|cx| {
        let _entered = span.enter();
        attempt.as_mut().poll(cx)
    })
    .await;
    let outcome = classifier.classify(&result);
    record_outcome(&span, &outcome);
    (result, outcome)
}

struct CallState {
    /// Attempts started, hedges included.
    attempts: u32,
    /// Rounds: the first attempt and each retry (not hedges).
    rounds: u32,
    /// Hedges started in this call.
    hedges: u32,
    /// The delay slept before the current round.
    delay: Duration,
}

/// Whether the current subscriber may want debug spans at all. Without one, the
/// attempt runs bare: even a disabled span costs a measurable share of a healthy
/// call.
#[inline]
fn spans_enabled() -> bool {
    tracing::Level::DEBUG <= tracing::level_filters::STATIC_MAX_LEVEL
        && tracing::Level::DEBUG <= tracing::level_filters::LevelFilter::current()
}

#[inline]
fn record_outcome(span: &tracing::Span, outcome: &Outcome) {
    if !span.is_disabled() {
        span.record("outcome", outcome_name(outcome));
    }
}

#[inline]
fn attempt_span(attempt: Attempt, delay: Duration) -> tracing::Span {
    tracing::debug_span!(
        "retry.attempt",
        attempt = attempt.number,
        hedge = attempt.hedge,
        delay_ms = delay.as_millis() as u64,
        outcome = tracing::field::Empty,
    )
}
