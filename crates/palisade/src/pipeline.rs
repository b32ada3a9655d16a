//! [`Pipeline`]: every strategy around a call, in an order that cannot be got wrong.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;
use std::task::{self, Poll};

use palisade_classify::{AnyErrorIsTransient, Classify, Outcome, Rejection, catch_panic};
use palisade_clock::{Clock, Timestamp, TokioClock};
use palisade_context::{Abandoned, CancelGuard, Cause, Context};
use palisade_fallback::Fallback;
use parking_lot::Mutex;
use tracing::Instrument;
use tracing::field::Empty;

#[cfg(feature = "retry")]
use crate::error::{Attempt, History};
use crate::error::{ConfigError, Error, TimeoutKind};
use crate::timer::timeout;

#[cfg(feature = "breaker")]
use palisade_breaker::Breaker;
#[cfg(feature = "limit")]
use palisade_limit::{Bulkhead, RateLimit, RateLimiter};
#[cfg(feature = "retry")]
use palisade_retry::{RetryError, RetryPolicy, StopReason};

/// The answer of an asynchronous rate limit, still to be awaited.
#[cfg(feature = "limit")]
type Asked<'a> = palisade_limit::Acquire<'a>;
#[cfg(not(feature = "limit"))]
type Asked<'a> = std::marker::PhantomData<&'a ()>;

/// The longest timeout a pipeline accepts: one day. Anything longer is a
/// configuration mistake (a unit confusion), not a limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// When an execution started (on the recent clock, 0 when the pipeline has no
/// timeout and read no clock) and its total timeout's deadline: what the boxed
/// path needs of the first poll.
#[derive(Clone, Copy, Debug)]
struct Times {
    start: u64,
    total: Option<Timestamp>,
}

/// Every strategy around calls to one dependency, composed in a fixed order,
/// outermost first:
///
/// fallback → total timeout → retry → circuit breaker → rate limit / bulkhead →
/// attempt timeout → the call.
///
/// Each layer is optional. The order is not a choice: an attempt timeout sits inside
/// the retry so that each attempt gets its own, and the breaker sits inside the
/// retry so that it counts every attempt.
///
/// A `Pipeline` is cheap to clone (one `Arc`) and shared by every call to the
/// dependency. Calls run through [`execute`](Self::execute), which takes the
/// caller's [`Context`]: the call ends early, with [`Error::is_cancelled`], when the
/// context is cancelled or its deadline passes.
///
/// ```
/// use palisade::{Context, Pipeline};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pipeline = Pipeline::builder("users-db")
///     .attempt_timeout(Duration::from_millis(200))
///     .total_timeout(Duration::from_secs(1))
///     .build()?;
///
/// let ctx = Context::background();
/// let user = pipeline
///     .execute(&ctx, |_ctx| async { Ok::<_, std::io::Error>("ada") })
///     .await?;
/// assert_eq!(user, "ada");
///
/// let slow = pipeline
///     .execute(&ctx, |_ctx| async {
///         tokio::time::sleep(Duration::from_secs(5)).await;
///         Ok::<_, std::io::Error>("late")
///     })
///     .await
///     .unwrap_err();
/// assert!(slow.is_timeout());
/// # Ok(())
/// # }
/// ```
pub struct Pipeline<K = AnyErrorIsTransient, C: Clock = TokioClock> {
    inner: Arc<Inner<K, C>>,
}

struct Inner<K, C: Clock> {
    name: Cow<'static, str>,
    classifier: K,
    layers: Layers<C>,
    /// The clock of the pipeline's own timers (the attempt and total timeouts)
    /// and of its strategies.
    clock: C,
    /// The retry policy hedges: the executor runs every attempt, the first
    /// included.
    hedged: bool,
    /// No hedging, no chaos layer and no asynchronous rate limit: the first attempt of every execution can
    /// start inline, decided once here.
    plain: bool,
    /// An attempt or a total timeout: each attempt's context carries a deadline
    /// of the pipeline's ([`Context::capped`]).
    timed: bool,
    /// The total timeout in nanoseconds, or 0 without one.
    total_nanos: u64,
    /// The attempt timeout in nanoseconds, or 0 without one.
    attempt_nanos: u64,
    /// The first attempt's budget from the start of its execution: the shorter
    /// of the two timeouts (0 without either), and which one it is.
    first_cap: (u64, Abandoned),
    /// What health and snapshots read of the calls.
    tally: crate::tally::Tally,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::PipelineMetrics,
}

impl<K, C: Clock> Inner<K, C> {
    fn new(name: Cow<'static, str>, classifier: K, layers: Layers<C>, clock: C) -> Self {
        #[cfg(feature = "retry")]
        let hedged = layers
            .retry
            .as_ref()
            .is_some_and(|policy| policy.hedging().is_some());
        #[cfg(not(feature = "retry"))]
        let hedged = false;
        #[cfg(feature = "chaos")]
        let chaos = layers.chaos.is_some();
        #[cfg(not(feature = "chaos"))]
        let chaos = false;
        // An asynchronous rate limit is asked on the boxed path.
        #[cfg(feature = "limit")]
        let asynchronous = layers.rate_limit.is_some();
        #[cfg(not(feature = "limit"))]
        let asynchronous = false;
        Inner {
            hedged,
            plain: !hedged && !chaos && !asynchronous,
            timed: layers.total_timeout.is_some() || layers.attempt_timeout.is_some(),
            total_nanos: layers.total_timeout.map_or(0, nanos),
            attempt_nanos: layers.attempt_timeout.map_or(0, nanos),
            first_cap: match (layers.attempt_timeout, layers.total_timeout) {
                (Some(attempt), Some(total)) if total < attempt => {
                    (nanos(total), Abandoned::TotalTimeout)
                }
                (Some(attempt), _) => (nanos(attempt), Abandoned::AttemptTimeout),
                (None, Some(total)) => (nanos(total), Abandoned::TotalTimeout),
                (None, None) => (0, Abandoned::AttemptTimeout),
            },
            tally: crate::tally::Tally::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::PipelineMetrics::new(&name),
            name,
            classifier,
            layers,
            clock,
        }
    }
}

/// The layers of a pipeline, apart from the classifier.
#[derive(Clone)]
struct Layers<C: Clock> {
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    #[cfg(feature = "retry")]
    retry: Option<RetryPolicy<C>>,
    #[cfg(feature = "breaker")]
    breaker: Option<Breaker<C>>,
    #[cfg(feature = "limit")]
    rate_limiter: Option<RateLimiter<C>>,
    /// A rate limit asked asynchronously (one kept on a server for a fleet).
    #[cfg(feature = "limit")]
    rate_limit: Option<Arc<dyn RateLimit>>,
    #[cfg(feature = "limit")]
    bulkhead: Option<Bulkhead<C>>,
    #[cfg(feature = "chaos")]
    chaos: Option<crate::chaos::Chaos>,
    #[cfg(not(all(feature = "retry", feature = "breaker", feature = "limit")))]
    clock: std::marker::PhantomData<C>,
}

impl<C: Clock> Default for Layers<C> {
    fn default() -> Self {
        Layers {
            total_timeout: None,
            attempt_timeout: None,
            #[cfg(feature = "retry")]
            retry: None,
            #[cfg(feature = "breaker")]
            breaker: None,
            #[cfg(feature = "limit")]
            rate_limiter: None,
            #[cfg(feature = "limit")]
            rate_limit: None,
            #[cfg(feature = "limit")]
            bulkhead: None,
            #[cfg(feature = "chaos")]
            chaos: None,
            #[cfg(not(all(feature = "retry", feature = "breaker", feature = "limit")))]
            clock: std::marker::PhantomData,
        }
    }
}

impl<C: Clock> fmt::Debug for Layers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Layers");
        d.field("total_timeout", &self.total_timeout);
        #[cfg(feature = "retry")]
        d.field("retry", &self.retry.is_some());
        #[cfg(feature = "breaker")]
        d.field("breaker", &self.breaker.as_ref().map(|b| b.state()));
        #[cfg(feature = "limit")]
        d.field("rate_limiter", &self.rate_limiter.is_some());
        #[cfg(feature = "limit")]
        d.field("rate_limit", &self.rate_limit);
        #[cfg(feature = "limit")]
        d.field("bulkhead", &self.bulkhead.as_ref().map(|b| b.limit()));
        #[cfg(feature = "chaos")]
        d.field("chaos", &self.chaos);
        d.field("attempt_timeout", &self.attempt_timeout);
        d.finish()
    }
}

impl<K, C: Clock> Clone for Pipeline<K, C> {
    fn clone(&self) -> Self {
        Pipeline {
            inner: self.inner.clone(),
        }
    }
}

impl<K, C: Clock> fmt::Debug for Pipeline<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.inner.name)
            .field("layers", &self.inner.layers)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Pipeline`]; every layer starts absent.
pub struct PipelineBuilder<K = AnyErrorIsTransient, C: Clock = TokioClock> {
    name: Cow<'static, str>,
    classifier: K,
    layers: Layers<C>,
    clock: C,
}

impl<K, C: Clock> fmt::Debug for PipelineBuilder<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A builder for the pipeline of the dependency `name` (used in spans, metric
    /// labels and the registry).
    ///
    /// The classifier starts as [`AnyErrorIsTransient`]: every `Err` is a
    /// transient failure, the useful default when nothing is known of the error.
    pub fn builder(name: impl Into<Cow<'static, str>>) -> PipelineBuilder {
        Pipeline::builder_with_clock(name, TokioClock)
    }
}

impl<C: Clock> Pipeline<AnyErrorIsTransient, C> {
    /// A builder for a pipeline whose timeouts run on `clock`, and whose
    /// strategies are built on the same clock: a [`ManualClock`] in a test that
    /// steps time by hand, for one.
    ///
    /// The clock is chosen first because every strategy added after is of its
    /// type (`Breaker<C>`, `RetryPolicy<C>`, `RateLimiter<C>`, `Bulkhead<C>`).
    /// The context each attempt runs under still carries its deadline on the
    /// [`TokioClock`] axis, the axis of every [`Context`] deadline: on another
    /// clock the pipeline's timers decide when it gives an attempt up, and the
    /// attempt's context ends by tokio's time (or with the pipeline's child
    /// context on the boxed path).
    ///
    /// [`ManualClock`]: palisade_clock::ManualClock
    ///
    /// ```
    /// use palisade::breaker::{Breaker, BreakerConfig};
    /// use palisade::clock::ManualClock;
    /// use palisade::{Context, Pipeline};
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let clock = ManualClock::new();
    /// let breaker = Breaker::builder(BreakerConfig::default()).clock(clock.clone()).build()?;
    /// let pipeline = Pipeline::builder_with_clock("users-db", clock.clone())
    ///     .breaker(breaker)
    ///     .attempt_timeout(Duration::from_millis(100))
    ///     .build()?;
    /// let ctx = Context::background();
    /// let call = pipeline.execute(&ctx, |_ctx| std::future::pending::<Result<(), std::io::Error>>());
    /// // The attempt timeout passes when the test says so.
    /// let step = async {
    ///     tokio::task::yield_now().await;
    ///     clock.advance(Duration::from_millis(100));
    /// };
    /// let (result, ()) = tokio::join!(call, step);
    /// assert!(result.unwrap_err().is_timeout());
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder_with_clock(
        name: impl Into<Cow<'static, str>>,
        clock: C,
    ) -> PipelineBuilder<AnyErrorIsTransient, C> {
        PipelineBuilder {
            name: name.into(),
            classifier: AnyErrorIsTransient,
            layers: Layers::default(),
            clock,
        }
    }
}

/// Refuses an empty or blank pipeline name, as the field `name`.
pub(crate) fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() {
        return Err(ConfigError::new(
            "name",
            name,
            "a name that is not empty or only whitespace",
        ));
    }
    Ok(())
}

/// `d` in nanoseconds, saturating (a pipeline's timeouts are at most a day).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn check_timeout(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(ConfigError::duration(
            field.to_owned(),
            d,
            "more than 0 and at most 24h",
        ));
    }
    Ok(())
}

impl<K, C: Clock> PipelineBuilder<K, C> {
    /// Decides the outcome of each attempt from its result.
    pub fn classifier<K2>(self, classifier: K2) -> PipelineBuilder<K2, C> {
        PipelineBuilder {
            name: self.name,
            classifier,
            layers: self.layers,
            clock: self.clock,
        }
    }

    /// Limits the whole execution, retries and their waits included.
    pub fn total_timeout(mut self, limit: Duration) -> Self {
        self.layers.total_timeout = Some(limit);
        self
    }

    /// Limits each attempt on its own.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.layers.attempt_timeout = Some(limit);
        self
    }

    /// Retries transient failures with this policy (its backoff, budget and
    /// hedging). Each attempt goes through the breaker, the limits and the attempt
    /// timeout on its own.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    pub fn retry(mut self, policy: RetryPolicy<C>) -> Self {
        self.layers.retry = Some(policy);
        self
    }

    /// Guards the dependency with this circuit breaker; it counts every attempt.
    /// Clones of a breaker share their state, so one breaker can guard several
    /// pipelines of the same dependency.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    pub fn breaker(mut self, breaker: Breaker<C>) -> Self {
        self.layers.breaker = Some(breaker);
        self
    }

    /// Limits the rate of attempts; an attempt over the rate is rejected at once.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn rate_limiter(mut self, limiter: RateLimiter<C>) -> Self {
        self.layers.rate_limiter = Some(limiter);
        self
    }

    /// Limits the rate of attempts with any [`RateLimit`], such as a fleet-wide
    /// limit kept on Redis (`palisade::redis`), asked after the breaker, the
    /// [`rate_limiter`](Self::rate_limiter) and the bulkhead's first try, and
    /// before the call; an attempt it refuses is rejected with its retry-after.
    /// Each attempt asks for one unit. A pipeline with one runs its attempts on
    /// the boxed path (one allocation per execution), since the answer may take a
    /// round trip; a pipeline without one is unchanged.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn rate_limit(mut self, limit: impl RateLimit) -> Self {
        self.layers.rate_limit = Some(Arc::new(limit));
        self
    }

    /// Bounds the attempts in flight at once (with the bulkhead's own bounded
    /// queue, if it has one).
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn bulkhead(mut self, bulkhead: Bulkhead<C>) -> Self {
        self.layers.bulkhead = Some(bulkhead);
        self
    }

    /// Injects faults innermost, just around the call, while the chaos is enabled.
    #[cfg(feature = "chaos")]
    #[cfg_attr(docsrs, doc(cfg(feature = "chaos")))]
    pub fn chaos(mut self, chaos: crate::chaos::Chaos) -> Self {
        self.layers.chaos = Some(chaos);
        self
    }

    /// The pipeline, or the first setting out of range.
    ///
    /// - The name must not be empty or only whitespace: it is the registry's key,
    ///   a metric label and a span field, and an empty one is always a mistake.
    /// - Both timeouts must be more than 0 and at most [`MAX_TIMEOUT`].
    /// - An attempt timeout longer than the total timeout is accepted, with a
    ///   warning event: the total timeout bounds every attempt too, so each
    ///   attempt then has what remains of the total, and the attempt timeout
    ///   never runs out first. It is not refused because the meaning is well
    ///   defined (it is the same as a caller's deadline shorter than the attempt
    ///   timeout), and because configurations often set a generous attempt
    ///   timeout once and tighten the total per dependency.
    pub fn build(self) -> Result<Pipeline<K, C>, ConfigError> {
        check_name(&self.name)?;
        if let Some(d) = self.layers.total_timeout {
            check_timeout("total_timeout", d)?;
        }
        if let Some(d) = self.layers.attempt_timeout {
            check_timeout("attempt_timeout", d)?;
        }
        if let (Some(attempt), Some(total)) =
            (self.layers.attempt_timeout, self.layers.total_timeout)
        {
            if attempt > total {
                tracing::warn!(
                    pipeline = %self.name,
                    attempt_timeout = ?attempt,
                    total_timeout = ?total,
                    "attempt_timeout is longer than total_timeout: the total timeout bounds every attempt, so the attempt timeout never runs out first"
                );
            }
        }
        Ok(Pipeline {
            inner: Arc::new(Inner::new(
                self.name,
                self.classifier,
                self.layers,
                self.clock,
            )),
        })
    }
}

impl<K, C: Clock> Pipeline<K, C> {
    /// The name of the dependency.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The classifier.
    pub fn classifier(&self) -> &K {
        &self.inner.classifier
    }

    /// The total timeout, if there is one.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.inner.layers.total_timeout
    }

    /// The attempt timeout, if there is one.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.layers.attempt_timeout
    }

    /// The retry policy, if the pipeline retries.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    pub fn retry_policy(&self) -> Option<&RetryPolicy<C>> {
        self.inner.layers.retry.as_ref()
    }

    /// The circuit breaker, if the pipeline has one.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    pub fn breaker(&self) -> Option<&Breaker<C>> {
        self.inner.layers.breaker.as_ref()
    }

    /// The rate limiter, if the pipeline has one.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn rate_limiter(&self) -> Option<&RateLimiter<C>> {
        self.inner.layers.rate_limiter.as_ref()
    }

    /// The asynchronous rate limit given to
    /// [`rate_limit`](PipelineBuilder::rate_limit), if the pipeline has one.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn rate_limit(&self) -> Option<&dyn RateLimit> {
        self.inner.layers.rate_limit.as_deref()
    }

    /// The bulkhead, if the pipeline has one.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub fn bulkhead(&self) -> Option<&Bulkhead<C>> {
        self.inner.layers.bulkhead.as_ref()
    }

    /// The counts of the pipeline's attempts and executions, read now (a few
    /// relaxed loads; nothing else is read).
    pub fn calls(&self) -> crate::CallCounts {
        self.inner.tally.counts()
    }

    /// The state and counters of every strategy of the pipeline, read now: what a
    /// health endpoint or a dashboard shows.
    pub fn snapshot(&self) -> PipelineSnapshot {
        #[allow(unused_variables)]
        let layers = &self.inner.layers;
        PipelineSnapshot {
            name: self.inner.name.to_string(),
            calls: self.inner.tally.counts(),
            #[cfg(feature = "retry")]
            retry: layers.retry.as_ref().map(|r| r.snapshot()),
            #[cfg(feature = "breaker")]
            breaker: layers.breaker.as_ref().map(|b| b.snapshot()),
            #[cfg(feature = "limit")]
            rate_limiter: layers.rate_limiter.as_ref().map(|r| r.snapshot()),
            #[cfg(feature = "limit")]
            bulkhead: layers.bulkhead.as_ref().map(|b| b.snapshot()),
        }
    }

    /// Runs `call` through every layer.
    ///
    /// `call` is invoked once per attempt, only once every strategy has admitted
    /// the attempt, with the attempt's own context: the caller's, with a
    /// deadline that is the earliest of the caller's, the attempt timeout and
    /// what remains of the total timeout, which ends with
    /// [`Cause::abandoned`] (attempt timeout, total timeout, hedge lost) when
    /// the pipeline gives the attempt up. A first attempt gets a
    /// [capped view](Context::capped) of the caller's context (no allocation,
    /// no lock); a retried or hedged attempt a child that the pipeline cancels.
    /// Without a timeout or hedging it is a clone of the caller's context. See
    /// the guide's section on timeouts for what each case ends with.
    ///
    /// Its result is classified by the pipeline's classifier: an `Ok` that the
    /// classifier calls a failure (an HTTP 503) is retried and counted like an
    /// error, and if it is still the last word it is returned as `Ok`. A panic,
    /// in the closure or in its future, is caught and is a permanent failure.
    ///
    /// On success with the default layers, nothing is allocated.
    pub fn execute<'a, T, E, F, Fut>(
        &'a self,
        ctx: &'a Context,
        call: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + use<'a, K, C, T, E, F, Fut>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        self.run(ctx, call, true)
    }

    /// The execution as one flat future: the first attempt runs inside it, and only
    /// a retry, a hedge, a bulkhead wait or an active chaos moves to a boxed
    /// future of its own.
    fn run<'a, T, E, F, Fut>(
        &'a self,
        ctx: &'a Context,
        call: F,
        retry: bool,
    ) -> impl Future<Output = Result<T, Error<E>>> + use<'a, K, C, T, E, F, Fut>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        Execute::new(self, ctx, call, retry, Self::slow)
    }

    /// Runs one future through every layer but the retry (a future cannot be run
    /// twice): the total timeout, the context, the breaker, the limits, chaos and
    /// the attempt timeout. For a request that cannot be cloned, such as an
    /// incoming request on a server.
    ///
    /// The future is made before the breaker and the limits are asked, and
    /// dropped unpolled if one refuses.
    pub fn execute_once<'a, T, E, Fut>(
        &'a self,
        ctx: &'a Context,
        call: Fut,
    ) -> impl Future<Output = Result<T, Error<E>>> + use<'a, K, C, T, E, Fut>
    where
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let mut slot = Some(call);
        let once = move |_ctx: Context| Once { inner: slot.take() };
        self.run(ctx, once, false)
    }

    /// Whether the first attempt starts in the boxed path: hedging (the executor
    /// runs every attempt, the first included), or chaos injecting (its plan is
    /// drawn there). Asked only of a pipeline that is not `plain`.
    #[inline(never)]
    #[allow(unused_variables)]
    fn starts_slow(&self, retry: bool) -> bool {
        if retry && self.inner.hedged {
            return true;
        }
        #[cfg(feature = "limit")]
        if self.inner.layers.rate_limit.is_some() {
            return true;
        }
        #[cfg(feature = "chaos")]
        if self
            .inner
            .layers
            .chaos
            .as_ref()
            .is_some_and(|c| c.is_enabled())
        {
            return true;
        }
        false
    }

    /// Whether the retry executor takes over after a settled first attempt with
    /// this outcome. Every call deposits into the retry budget once: here when it
    /// does not, or in the executor.
    #[inline(always)]
    #[allow(unused_variables)]
    fn retries(&self, retry: bool, outcome: &Outcome) -> bool {
        #[cfg(feature = "retry")]
        if let (Some(policy), true) = (&self.inner.layers.retry, retry) {
            if outcome.is_retryable() {
                return true;
            }
            if let Some(budget) = policy.budget() {
                budget.deposit();
            }
        }
        false
    }

    /// Ends an attempt of the flat future: its outcome to the breaker, its
    /// bulkhead slot freed, its metrics and the outcome in its span (`None` when
    /// the first poll made none).
    #[inline(always)]
    #[allow(unused_variables)]
    fn attempt_done(
        &self,
        permit: BreakerPermit<'_, C>,
        slot: Option<BulkheadPermit<'_>>,
        span: Option<&tracing::Span>,
        outcome: Outcome,
    ) {
        #[cfg(feature = "breaker")]
        if let Some(permit) = permit {
            permit.record(outcome);
        }
        #[cfg(feature = "limit")]
        drop(slot);
        self.inner.tally.attempt(&outcome);
        #[cfg(feature = "metrics")]
        self.inner.metrics.attempt(&outcome);
        if let Some(span) = span.filter(|span| !span.is_disabled()) {
            span.record("outcome", tracing::field::display(outcome));
        }
    }

    /// The boxed path: what the flat future of [`run`](Self::run) does not do
    /// inline.
    ///
    /// `total` is the deadline of the total timeout, if there is one, as every
    /// attempt's context carries it.
    async fn slow<'a, T, E, F, Fut>(
        &'a self,
        ctx: &'a Context,
        total: Times,
        call: F,
        retry: bool,
        resume: Resume<'a, C, T, E>,
    ) -> (Result<T, Error<E>>, u32)
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let (first, outcome, call) = match resume {
            Resume::Start => return self.attempts(ctx, total, call, retry).await,
            Resume::Waiting(permit) => {
                // The call is made only once the bulkhead has a slot for it.
                let call = Mutex::new(call);
                let (first, outcome) = self
                    .attempt_admitted(
                        Ok((permit, None)),
                        None,
                        ctx,
                        total,
                        &call,
                        #[cfg(feature = "chaos")]
                        Default::default(),
                        1,
                    )
                    .await;
                (first, outcome, call.into_inner())
            }
            Resume::Retry(first, outcome) => (first, outcome, call),
        };
        self.after_first(ctx, total, call, retry, first, outcome)
            .await
    }

    /// The attempts, each through the inner layers. Returns the result and how many
    /// attempts ran.
    async fn attempts<T, E, F, Fut>(
        &self,
        ctx: &Context,
        total: Times,
        call: F,
        retry: bool,
    ) -> (Result<T, Error<E>>, u32)
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        // With hedging, the executor runs every attempt, the first included (it may
        // be hedged).
        let call = Mutex::new(call);
        #[cfg(feature = "retry")]
        if let (Some(policy), true) = (&self.inner.layers.retry, retry) {
            if policy.hedging().is_some() {
                let mut made = 0;
                let history = Mutex::new(History::default());
                let result = policy
                    .retry_with(ctx, &ByAttempt, |attempt| {
                        made = attempt.number();
                        let fut = self.attempt(ctx, total, &call, attempt.number());
                        let fut = recorded(&history, attempt.number(), fut);
                        async move {
                            let (result, outcome) = fut.await;
                            result.map(|v| (v, outcome))
                        }
                    })
                    .await;
                return with_history(retried(result, made), history);
            }
        }
        // Otherwise the first attempt runs here, outside the retry executor: a call
        // that does not need a retry never enters its machinery.
        let (first, outcome) = self.attempt(ctx, total, &call, 1).await;
        self.after_first(ctx, total, call.into_inner(), retry, first, outcome)
            .await
    }

    /// After a first attempt outside the retry executor: the executor takes over
    /// if it failed transiently.
    #[allow(unused_mut, unused_variables)]
    async fn after_first<T, E, F, Fut>(
        &self,
        ctx: &Context,
        total: Times,
        call: F,
        retry: bool,
        first: Result<T, Error<E>>,
        outcome: Outcome,
    ) -> (Result<T, Error<E>>, u32)
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        #[cfg(feature = "retry")]
        if let (Some(policy), true) = (&self.inner.layers.retry, retry) {
            if !self.retries(retry, &outcome) {
                // Settled: `retries` made the call's one budget deposit.
                return (first, 1);
            }
            // A transient failure: the executor takes over, its first attempt being
            // the one that just failed. The attempt's own outcome travels with its
            // value, so that the retry reads the pipeline classifier's verdict on an
            // `Ok` too.
            let took = (total.start != 0).then(|| {
                Duration::from_nanos(TokioClock.now().as_nanos().saturating_sub(total.start))
            });
            let history = Mutex::new(History::default());
            history
                .lock()
                .push(attempt_record(&first, outcome, 1, took));
            let mut replay = Some(first.map(|v| (v, outcome)));
            let mut made = 1;
            let call = Mutex::new(call);
            let result = policy
                .retry_with(ctx, &ByAttempt, |attempt| {
                    made = attempt.number();
                    let replayed = replay.take();
                    let fut = match replayed {
                        Some(_) => None,
                        None => Some(recorded(
                            &history,
                            attempt.number(),
                            self.attempt(ctx, total, &call, attempt.number()),
                        )),
                    };
                    async move {
                        if let Some(r) = replayed {
                            return r;
                        }
                        match fut {
                            Some(fut) => {
                                let (result, outcome) = fut.await;
                                result.map(|v| (v, outcome))
                            }
                            // Not reached: only the first attempt is replayed.
                            None => std::future::pending().await,
                        }
                    }
                })
                .await;
            return with_history(retried(result, made), history);
        }
        (first, 1)
    }

    /// One attempt through the layers inside the retry.
    ///
    /// The call is made only once the breaker, the limits and the bulkhead's
    /// queue have admitted it, under the attempt's own context.
    fn attempt<'a, T, E, F, Fut>(
        &'a self,
        ctx: &'a Context,
        total: Times,
        call: &'a Mutex<F>,
        number: u32,
    ) -> impl Future<Output = (Result<T, Error<E>>, Outcome)> + use<'a, K, C, T, E, F, Fut>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>> + 'a,
        K: Classify<T, E>,
    {
        #[allow(unused_variables)]
        let layers = &self.inner.layers;
        // Admission is synchronous, so that a refused attempt never calls `call`.
        let admitted = self.admit();
        // An asynchronous rate limit is asked once the others have admitted.
        #[cfg(feature = "limit")]
        let asked = match (&admitted, &layers.rate_limit) {
            (Ok(_), Some(limit)) => Some(limit.acquire(ctx, 1)),
            _ => None,
        };
        #[cfg(not(feature = "limit"))]
        let asked = None;
        // Chaos decides before the call is made: an injected error replaces it.
        #[cfg(feature = "chaos")]
        let plan = match (&admitted, &layers.chaos) {
            (Ok(_), Some(chaos)) => chaos.plan(),
            _ => Default::default(),
        };
        self.attempt_admitted(
            admitted,
            asked,
            ctx,
            total,
            call,
            #[cfg(feature = "chaos")]
            plan,
            number,
        )
    }

    /// One attempt, once the breaker and the limits have answered (the bulkhead
    /// perhaps without a slot yet); the call is made once the bulkhead has a
    /// slot, under a child of `ctx` that the attempt gives up ([`Abandon`]).
    #[allow(clippy::too_many_arguments)]
    fn attempt_admitted<'a, T, E, F, Fut>(
        &'a self,
        admitted: Result<(BreakerPermit<'a, C>, Option<BulkheadPermit<'a>>), Rejection>,
        asked: Option<Asked<'a>>,
        ctx: &'a Context,
        total: Times,
        call: &'a Mutex<F>,
        #[cfg(feature = "chaos")] plan: crate::chaos::Plan,
        number: u32,
    ) -> impl Future<Output = (Result<T, Error<E>>, Outcome)> + use<'a, K, C, T, E, F, Fut>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>> + 'a,
        K: Classify<T, E>,
    {
        let span = tracing::debug_span!(
            "palisade.attempt",
            attempt = number,
            outcome = Empty,
            error.kind = Empty
        );
        let own = span.clone();
        let layers = &self.inner.layers;
        async move {
            #[allow(unused_mut)]
            let (permit, mut slot) = match admitted {
                Ok(admission) => admission,
                Err(rejection) => {
                    return self.rejected_attempt(&own, rejection);
                }
            };
            #[cfg(feature = "limit")]
            if let Some(Err(limited)) = match asked {
                Some(asked) => Some(asked.await),
                None => None,
            } {
                return self.rejected_attempt(&own, limited.rejection());
            }
            #[cfg(not(feature = "limit"))]
            let _ = asked;
            // Only a bulkhead that was full at the first try is awaited (its queue,
            // if it has one); the call is made only once it has a slot.
            #[cfg(feature = "limit")]
            if let (Some(bulkhead), None) = (&layers.bulkhead, &slot) {
                match bulkhead.acquire().await {
                    Ok(permit) => slot = Some(permit),
                    Err(full) => {
                        return self.rejected_attempt(&own, full.rejection());
                    }
                }
            }
            #[cfg(feature = "chaos")]
            let skip = plan.fail.is_some();
            #[cfg(not(feature = "chaos"))]
            let skip = false;
            let (attempt_ctx, abandon) = self.attempt_child(ctx, total);
            let fut = if skip {
                None
            } else {
                let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    (call.lock())(attempt_ctx)
                }));
                match made {
                    Ok(fut) => Some(fut),
                    Err(payload) => {
                        abandon.done();
                        let (result, outcome) = panicked(&*payload);
                        self.attempt_done(permit, slot, Some(&own), outcome);
                        return (result, outcome);
                    }
                }
            };
            #[cfg(feature = "chaos")]
            let call = async move {
                if let Some(delay) = plan.delay {
                    self.inner.clock.sleep(delay).await;
                }
                match (plan.fail, fut) {
                    (Some(_), _) | (None, None) => Err(outcome_or_transient(plan.fail)),
                    (None, Some(call)) => Ok(call.await),
                }
            };
            #[cfg(feature = "chaos")]
            let fut = timeout(
                self.inner.clock.clone(),
                layers.attempt_timeout,
                catch_panic(call),
            );
            #[cfg(not(feature = "chaos"))]
            let Some(call) = fut else {
                // Unreachable: without chaos the call is made whenever admitted.
                return self
                    .rejected_attempt(&own, Rejection::new(palisade_classify::Strategy::Bulkhead));
            };
            #[cfg(not(feature = "chaos"))]
            let fut = timeout(
                self.inner.clock.clone(),
                layers.attempt_timeout,
                catch_panic(call),
            );
            #[cfg(not(feature = "chaos"))]
            let fut = async move {
                match fut.await {
                    Ok(Ok(result)) => Ok(Ok(Ok::<_, Outcome>(result))),
                    Ok(Err(panic)) => Ok(Err(panic)),
                    Err(elapsed) => Err(elapsed),
                }
            };
            let settled = fut.await;
            // Settled: the attempt's context is let be (a timeout has ended it
            // already; a finished attempt leaves it to end with its caller's).
            abandon.done();
            let (result, outcome) = match settled {
                Ok(Ok(Err(injected))) => (Err(Error::injected(injected)), injected),
                Ok(Ok(Ok(result))) => {
                    let outcome = self.inner.classifier.classify(&result);
                    (result.map_err(|e| Error::inner(e, outcome)), outcome)
                }
                Ok(Err(panic)) => (Err(Error::panicked(panic)), Outcome::Permanent),
                Err(elapsed) => {
                    self.inner.tally.timed_out();
                    (
                        Err(Error::timeout(TimeoutKind::Attempt, elapsed.after())),
                        Outcome::transient(),
                    )
                }
            };
            #[cfg(feature = "chaos")]
            let (result, outcome) = match plan.replace {
                Some(replaced) => (result.map_err(|e| e.with_outcome(replaced)), replaced),
                None => (result, outcome),
            };
            if let Err(error) = &result {
                note_error(&own, error.kind_str());
            }
            self.attempt_done(permit, slot, Some(&own), outcome);
            (result, outcome)
        }
        .instrument(span)
    }

    /// When an execution or an attempt starts, in nanoseconds on the recent clock
    /// (which lags the exact clock by about a millisecond and never leads it, so
    /// that a deadline counted from it is never later than the timer counted
    /// from the exact clock); 0 for a pipeline without a timeout, which needs none.
    #[inline(always)]
    fn start(&self) -> u64 {
        if self.inner.timed {
            TokioClock.recent().as_nanos()
        } else {
            0
        }
    }

    /// The start of an execution at `now`, and its total timeout's deadline.
    #[inline]
    fn times(&self, now: u64) -> Times {
        Times {
            start: now,
            total: self.total_deadline(now),
        }
    }

    /// The deadline of the total timeout of an execution started at `now`.
    #[inline]
    fn total_deadline(&self, now: u64) -> Option<Timestamp> {
        match self.inner.total_nanos {
            0 => None,
            total => Some(Timestamp::from_nanos(now.saturating_add(total))),
        }
    }

    /// The context of the first attempt of an execution started at `now`, on
    /// the flat path: [`attempt_context`](Self::attempt_context) with the
    /// shorter timeout worked out when the pipeline was built.
    #[inline(always)]
    fn first_context(&self, ctx: &Context, now: u64) -> Context {
        if !self.inner.timed {
            return ctx.clone();
        }
        let (budget, reason) = self.inner.first_cap;
        ctx.capped(Timestamp::from_nanos(now.saturating_add(budget)), reason)
    }

    /// The context of an attempt started at `now`: `ctx` with the pipeline's
    /// deadline for this attempt (the earlier of the attempt timeout from `now`
    /// and the total timeout's `total`), and the cause that says which one
    /// passed. A clone of `ctx` when the pipeline has no timeout.
    #[inline(always)]
    fn attempt_context(&self, ctx: &Context, now: u64, total: Option<Timestamp>) -> Context {
        if !self.inner.timed {
            return ctx.clone();
        }
        let total = total.map_or(u64::MAX, Timestamp::as_nanos);
        let attempt = match self.inner.attempt_nanos {
            0 => u64::MAX,
            limit => now.saturating_add(limit),
        };
        if attempt <= total {
            ctx.capped(Timestamp::from_nanos(attempt), Abandoned::AttemptTimeout)
        } else {
            ctx.capped(Timestamp::from_nanos(total), Abandoned::TotalTimeout)
        }
    }

    /// The context of an attempt on the boxed path (retries, hedges, bulkhead
    /// waits): as [`attempt_context`](Self::attempt_context), under a child of
    /// `ctx` that the returned [`Abandon`] cancels if the attempt is dropped
    /// before it settles: a hedge that lost, or an execution dropped by its
    /// caller.
    fn attempt_child(&self, ctx: &Context, total: Times) -> (Context, Abandon) {
        let (child, guard) = ctx.with_cancel();
        let attempt = self.attempt_context(&child, self.start(), total.total);
        let reason = if self.inner.hedged {
            Some(Abandoned::HedgeLost)
        } else {
            None
        };
        let abandon = Abandon {
            guard: Some(guard),
            ctx: attempt.clone(),
            reason,
        };
        (attempt, abandon)
    }

    /// An attempt refused by a strategy before it reached the dependency; `span`
    /// is the attempt's.
    #[cold]
    fn rejected_attempt<T, E>(
        &self,
        span: &tracing::Span,
        rejection: Rejection,
    ) -> (Result<T, Error<E>>, Outcome) {
        let _entered = span.enter();
        tracing::debug!(strategy = rejection.strategy().as_str(), "attempt rejected");
        let outcome = Outcome::Rejected(rejection);
        span.record("outcome", "rejected");
        span.record("error.kind", "rejected");
        self.inner.tally.rejected();
        #[cfg(feature = "metrics")]
        self.inner.metrics.attempt(&outcome);
        (Err(Error::rejected(rejection)), outcome)
    }

    /// Reports a finished execution to the metrics.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self, kind: &str, started: palisade_clock::Timestamp) {
        let m = &self.inner.metrics;
        m.call(
            kind,
            self.inner.clock.now().saturating_duration_since(started),
        );
        #[cfg(feature = "breaker")]
        if let Some(b) = &self.inner.layers.breaker {
            use palisade_breaker::State;
            m.breaker_state(match b.state() {
                State::Closed => 0.0,
                State::Open => 1.0,
                State::HalfOpen => 2.0,
                State::ForcedOpen => 3.0,
                State::ForcedClosed => 4.0,
                _ => 5.0,
            });
        }
        #[cfg(feature = "limit")]
        if let Some(b) = &self.inner.layers.bulkhead {
            m.bulkhead_in_flight(f64::from(b.snapshot().in_flight));
        }
    }

    /// Asks the breaker, the rate limiter and the bulkhead (without waiting), in
    /// that order. A permit taken before a later refusal is dropped unused: it
    /// counts nothing.
    #[inline(always)]
    fn admit(&self) -> Result<(BreakerPermit<'_, C>, Option<BulkheadPermit<'_>>), Rejection> {
        #[allow(unused_variables)]
        let layers = &self.inner.layers;
        #[cfg(feature = "breaker")]
        let permit = match &layers.breaker {
            Some(breaker) => Some(breaker.try_acquire().map_err(|r| r.rejection())?),
            None => None,
        };
        #[cfg(not(feature = "breaker"))]
        let permit = std::marker::PhantomData;
        #[cfg(feature = "limit")]
        {
            if let Some(limiter) = &layers.rate_limiter {
                limiter.check().map_err(|l| l.rejection())?;
            }
            let slot = match &layers.bulkhead {
                Some(bulkhead) => bulkhead.try_acquire_uncounted(),
                None => None,
            };
            Ok((permit, slot))
        }
        #[cfg(not(feature = "limit"))]
        Ok((permit, None))
    }

    /// This pipeline with a fallback chain as its outermost layer: what the
    /// execution answers when everything inside has failed.
    pub fn with_fallback<T, E>(
        &self,
        fallback: Fallback<T, Error<E>, Context>,
    ) -> WithFallback<T, E, K, C> {
        WithFallback {
            pipeline: self.clone(),
            fallback,
        }
    }
}

/// Ends the context of an attempt on the boxed path that is dropped before it
/// settles, with [`Cause::abandoned`]`(HedgeLost)` when the pipeline hedges (a
/// hedge that lost, or an execution dropped while hedging) or
/// [`Cause::canceled`] otherwise (an execution dropped by its caller). A context
/// that has ended already (its deadline, its caller's end) keeps its cause.
struct Abandon {
    guard: Option<CancelGuard>,
    /// The attempt's context, with its deadline.
    ctx: Context,
    reason: Option<Abandoned>,
}

impl Abandon {
    /// The attempt settled: its context is left to end with its caller's.
    fn done(mut self) {
        if let Some(guard) = self.guard.take() {
            guard.detach();
        }
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if self.ctx.is_cancelled() {
            guard.detach();
            return;
        }
        match self.reason {
            Some(reason) => guard.cancel_with_cause(Cause::abandoned(reason)),
            None => guard.cancel(),
        };
    }
}

/// The state and counters of a pipeline's strategies; made by
/// [`Pipeline::snapshot`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PipelineSnapshot {
    /// The dependency's name.
    pub name: String,
    /// The counts of its attempts and executions.
    pub calls: crate::CallCounts,
    /// The retry policy's counters (and its budget's), if it retries.
    #[cfg(feature = "retry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
    pub retry: Option<palisade_retry::RetrySnapshot>,
    /// The breaker's state and window, if it has one.
    #[cfg(feature = "breaker")]
    #[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
    pub breaker: Option<palisade_breaker::BreakerSnapshot>,
    /// The rate limiter's counters, if it has one.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub rate_limiter: Option<palisade_limit::RateLimiterSnapshot>,
    /// The bulkhead's counters, if it has one.
    #[cfg(feature = "limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
    pub bulkhead: Option<palisade_limit::BulkheadSnapshot>,
}

impl PipelineSnapshot {
    /// Whether the dependency is taking calls: no breaker, or a breaker that lets
    /// calls through (closed, half-open with probes, forced closed, disabled). An
    /// open or forced-open breaker makes it unhealthy.
    pub fn is_healthy(&self) -> bool {
        #[cfg(feature = "breaker")]
        if let Some(b) = &self.breaker {
            use palisade_breaker::State;
            return !matches!(b.state, State::Open | State::ForcedOpen);
        }
        true
    }
}

#[cfg(feature = "breaker")]
type BreakerPermit<'a, C> = Option<palisade_breaker::Permit<'a, C>>;
#[cfg(not(feature = "breaker"))]
type BreakerPermit<'a, C> = std::marker::PhantomData<&'a C>;
#[cfg(feature = "limit")]
type BulkheadPermit<'a> = palisade_limit::Permit<'a>;
#[cfg(not(feature = "limit"))]
type BulkheadPermit<'a> = std::marker::PhantomData<&'a ()>;

pin_project_lite::pin_project! {
    /// The one future of [`Pipeline::execute_once`]; it is only ever taken once.
    struct Once<F> {
        #[pin]
        inner: Option<F>,
    }
}

impl<F: Future> Future for Once<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        match self.project().inner.as_pin_mut() {
            Some(f) => f.poll(cx),
            // Not reached: a single attempt takes the future once.
            None => std::task::Poll::Pending,
        }
    }
}

/// The outcome an injected error stands for.
#[cfg(feature = "chaos")]
fn outcome_or_transient(o: Option<Outcome>) -> Outcome {
    o.unwrap_or_else(Outcome::transient)
}

/// The retry's classifier: an attempt's value carries the outcome the pipeline's
/// classifier gave it; an error knows its own.
#[cfg(feature = "retry")]
#[derive(Debug)]
struct ByAttempt;

#[cfg(feature = "retry")]
impl<T, E> Classify<(T, Outcome), Error<E>> for ByAttempt {
    #[inline]
    fn classify(&self, result: &Result<(T, Outcome), Error<E>>) -> Outcome {
        match result {
            Ok((_, outcome)) => *outcome,
            Err(e) => e.outcome(),
        }
    }
}

/// The retry executor's result as the pipeline's, with how many attempts ran:
/// `made` (the last one started) when it succeeded.
#[cfg(feature = "retry")]
fn retried<T, E>(
    result: Result<(T, Outcome), RetryError<Error<E>>>,
    made: u32,
) -> (Result<T, Error<E>>, u32) {
    match result {
        Ok((v, _)) => (Ok(v), made),
        Err(e) => {
            let attempts = e.attempts();
            (Err(from_retry(e)), attempts)
        }
    }
}

/// An attempt's end as the error's history keeps it.
#[cfg(feature = "retry")]
fn attempt_record<T, E>(
    result: &Result<T, Error<E>>,
    outcome: Outcome,
    number: u32,
    took: Option<Duration>,
) -> Attempt {
    match result {
        Err(error) => error.attempt(number, took),
        // An `Ok` the classifier calls a failure (a 503).
        Ok(_) => Attempt::of_value(number, outcome, took),
    }
}

/// Runs one attempt of the retry executor and writes its end into `history`,
/// with how long it took on the recent clock.
#[cfg(feature = "retry")]
async fn recorded<T, E, F>(
    history: &Mutex<History>,
    number: u32,
    attempt: F,
) -> (Result<T, Error<E>>, Outcome)
where
    F: Future<Output = (Result<T, Error<E>>, Outcome)>,
{
    let started = TokioClock.now();
    let (result, outcome) = attempt.await;
    let took = TokioClock.now().saturating_duration_since(started);
    history
        .lock()
        .push(attempt_record(&result, outcome, number, Some(took)));
    (result, outcome)
}

/// A retried execution's result, its error given the attempts' history.
#[cfg(feature = "retry")]
fn with_history<T, E>(
    (mut result, attempts): (Result<T, Error<E>>, u32),
    history: Mutex<History>,
) -> (Result<T, Error<E>>, u32) {
    if let Err(error) = &mut result {
        error.set_history(history.into_inner());
    }
    (result, attempts)
}

/// The pipeline's error for a retry that stopped.
#[cfg(feature = "retry")]
fn from_retry<E>(e: RetryError<Error<E>>) -> Error<E> {
    let reason = e.reason();
    let attempts = e.attempts();
    let cause = e.context_cause().cloned();
    match (reason, e.into_last_error()) {
        (StopReason::Cancelled, _) | (StopReason::DeadlineExceeded, None) => {
            Error::cancelled(cause.unwrap_or_else(palisade_context::Cause::deadline_exceeded))
        }
        (StopReason::DeadlineExceeded, Some(last)) => match cause {
            Some(cause) => Error::cancelled(cause),
            None => Error::exhausted(attempts, last),
        },
        (StopReason::AttemptsExhausted | StopReason::ElapsedExhausted, Some(last)) => {
            Error::exhausted(attempts, last)
        }
        (StopReason::BudgetExhausted, Some(last)) => Error::budget_exhausted(attempts, last),
        (_, Some(last)) => last,
        (_, None) => Error::cancelled(palisade_context::Cause::canceled()),
    }
}

/// A [`Pipeline`] with a fallback chain outermost; made by
/// [`Pipeline::with_fallback`].
pub struct WithFallback<T, E, K = AnyErrorIsTransient, C: Clock = TokioClock> {
    pipeline: Pipeline<K, C>,
    fallback: Fallback<T, Error<E>, Context>,
}

impl<T, E, K, C: Clock> Clone for WithFallback<T, E, K, C> {
    fn clone(&self) -> Self {
        WithFallback {
            pipeline: self.pipeline.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<T, E, K, C: Clock> fmt::Debug for WithFallback<T, E, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithFallback")
            .field("pipeline", &self.pipeline)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl<T, E, K, C: Clock> WithFallback<T, E, K, C> {
    /// The pipeline inside the fallback.
    pub fn pipeline(&self) -> &Pipeline<K, C> {
        &self.pipeline
    }

    /// Runs `call` through the pipeline; a failure that a tier of the chain
    /// accepts is replaced by that tier's answer.
    ///
    /// When the chain cannot answer, the error is the pipeline's; if a tier failed
    /// too, the error says which ([`Error::is_fallback_failed`]) and keeps the
    /// pipeline's error as its `source()`.
    ///
    /// The chain runs under the caller's context. When that context ends (it is
    /// cancelled or its deadline passes) while a tier is waiting, the chain is
    /// dropped and the error is the cancellation, with its cause
    /// ([`Error::is_cancelled`]); a chain that fails while the context has ended is
    /// reported the same way, since a tier that honours its context fails then
    /// because of the caller, not because of the fallback. A tier that answers
    /// at once (a value tier) still answers a caller whose context has ended.
    pub async fn execute<F, Fut>(&self, ctx: &Context, call: F) -> Result<T, Error<E>>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let (result, outcome) = match self.pipeline.execute(ctx, call).await {
            Ok(v) => {
                // An `Ok` the classifier calls a failure (a 503) may still be replaced.
                let probe: Result<T, E> = Ok(v);
                let outcome = self.pipeline.classifier().classify(&probe);
                if !outcome.is_success() {
                    self.pipeline.inner.tally.execution_failed();
                }
                (probe.map_err(|e| Error::inner(e, outcome)), outcome)
            }
            Err(e) => {
                let outcome = e.outcome();
                (Err(e), outcome)
            }
        };
        if outcome.is_success() {
            return result;
        }
        let recovered = unless_ended(ctx, self.fallback.recover(ctx, result, outcome)).await;
        let tally = &self.pipeline.inner.tally;
        match recovered {
            Ok(Ok(v)) => {
                tally.fallback(true);
                Ok(v)
            }
            Ok(Err(e)) => match e.into_parts() {
                (original, None) => Err(original),
                (original, Some((tier, error))) => match ctx.cause() {
                    Some(cause) => Err(Error::cancelled(cause)),
                    None => {
                        tally.fallback(false);
                        Err(Error::fallback_failed(tier, error, original))
                    }
                },
            },
            Err(cause) => Err(Error::cancelled(cause)),
        }
    }
}

/// Runs `fut` until it completes or `ctx` ends. `fut` is polled first, so that
/// what completes at once completes even on a context that has already ended.
async fn unless_ended<F: Future>(
    ctx: &Context,
    fut: F,
) -> Result<F::Output, palisade_context::Cause> {
    let mut fut = std::pin::pin!(fut);
    let mut ended = std::pin::pin!(ctx.cancelled());
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        ended.as_mut().poll(cx).map(|()| {
            Err(ctx
                .cause()
                .unwrap_or_else(palisade_context::Cause::canceled))
        })
    })
    .await
}

/// Where the boxed path of an execution begins.
enum Resume<'a, C: Clock, T, E> {
    /// At the start: hedging, or chaos injecting.
    #[cfg_attr(not(any(feature = "retry", feature = "chaos")), allow(dead_code))]
    Start,
    /// Admitted by the breaker and the limits but for a full bulkhead: the call
    /// is made once the bulkhead has a slot.
    #[cfg_attr(not(feature = "limit"), allow(dead_code))]
    Waiting(BreakerPermit<'a, C>),
    /// After a first attempt that failed transiently: the retry executor.
    Retry(Result<T, Error<E>>, Outcome),
}

#[cfg(feature = "metrics")]
type Started = Option<palisade_clock::Timestamp>;
#[cfg(not(feature = "metrics"))]
type Started = ();

/// Makes the boxed path of an execution.
type MakeSlow<'a, K, C, T, E, F, S> =
    fn(&'a Pipeline<K, C>, &'a Context, Times, F, bool, Resume<'a, C, T, E>) -> S;

pin_project_lite::pin_project! {
    /// The future of [`Pipeline::execute`]: the span, the context, the total
    /// timeout and the first attempt (its breaker permit, bulkhead slot, attempt
    /// timeout and panic guard) in one flat state machine. Only a retry, a hedge, a
    /// bulkhead wait or an injected fault moves on to the boxed path `S`.
    ///
    /// The first poll keeps its permit, slot and spans in locals: a call that
    /// completes at once writes nothing back but the end of its call's future, and
    /// dropping the execution then looks at two discriminants. What a later poll
    /// needs is moved into `rest` only when the first poll does not finish.
    #[project = ExecuteProj]
    struct Execute<'a, K, C: Clock, T, E, F, Fut, S> {
        pipeline: &'a Pipeline<K, C>,
        ctx: &'a Context,
        call: Option<F>,
        retry: bool,
        stage: Stage,
        #[pin]
        fut: Option<Fut>,
        #[pin]
        rest: Option<Rest<'a, C, S>>,
        make_slow: MakeSlow<'a, K, C, T, E, F, S>,
    }
}

pin_project_lite::pin_project! {
    /// The state of an execution that its first poll did not finish: the attempt's
    /// permit, slot, span and timer, the boxed path, the total timeout, the
    /// context's waiter and the execution's span. Timers are armed only once a
    /// poll finds the work pending.
    #[project = RestProj]
    struct Rest<'a, C: Clock, S> {
        permit: BreakerPermit<'a, C>,
        slot: Option<BulkheadPermit<'a>>,
        attempt_span: tracing::Span,
        #[pin]
        attempt_timer: Option<C::Sleep>,
        slow: Option<Pin<Box<S>>>,
        #[pin]
        total: Option<C::Sleep>,
        cancelled: Option<palisade_context::Cancelled<'a>>,
        span: tracing::Span,
        started_at: Started,
        // The execution's start and its total timeout's deadline, which every
        // attempt's context carries.
        total_deadline: Times,
    }
}

impl<'a, K, C: Clock, T, E, F, Fut, S> Execute<'a, K, C, T, E, F, Fut, S> {
    #[inline]
    fn new(
        pipeline: &'a Pipeline<K, C>,
        ctx: &'a Context,
        call: F,
        retry: bool,
        make_slow: MakeSlow<'a, K, C, T, E, F, S>,
    ) -> Self {
        Execute {
            pipeline,
            ctx,
            call: Some(call),
            retry,
            stage: Stage::First,
            fut: None,
            rest: None,
            make_slow,
        }
    }
}

/// Where an execution is: before its first poll, after it, or finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    First,
    Later,
    Done,
}

/// A settled attempt: its result and outcome.
type Settled<T, E> = (Result<T, Error<E>>, Outcome);

impl<'a, K, C, T, E, F, Fut, S> Future for Execute<'a, K, C, T, E, F, Fut, S>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    type Output = Result<T, Error<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Self::Output> {
        let polled = match self.stage {
            // One check of the level for both spans: below it, the first poll has
            // no span to make, enter, record or drop.
            Stage::First if tracing::level_enabled!(tracing::Level::DEBUG) => {
                self.as_mut().first_traced(cx)
            }
            Stage::First => self.as_mut().first::<false>(cx),
            Stage::Later => poll_later(self.as_mut().project(), cx, None, false),
            Stage::Done => panic!("a pipeline execution polled after it completed"),
        };
        if polled.is_ready() {
            // Finished: its timers, waiter, permit and slot go now, and it cannot
            // finish (and be counted) twice.
            let mut this = self.project();
            *this.stage = Stage::Done;
            if this.rest.as_mut().as_pin_mut().is_some() {
                this.rest.set(None);
            }
        }
        polled
    }
}

impl<'a, K, C, T, E, F, Fut, S> Execute<'a, K, C, T, E, F, Fut, S>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    /// The first poll with its spans (when their callsites are enabled).
    #[inline(never)]
    fn first_traced(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Result<T, Error<E>>> {
        self.first::<true>(cx)
    }

    /// The first poll: the attempt starts, and is polled, inline. `TRACED` is
    /// whether the spans are made at all.
    #[inline(always)]
    fn first<const TRACED: bool>(
        self: Pin<&mut Self>,
        cx: &mut task::Context<'_>,
    ) -> Poll<Result<T, Error<E>>> {
        let mut this = self.project();
        *this.stage = Stage::Later;
        let pipeline: &'a Pipeline<K, C> = this.pipeline;
        let ctx: &'a Context = this.ctx;
        let retry = *this.retry;
        let span = if TRACED {
            tracing::debug_span!(
                "palisade.execute",
                dependency = %pipeline.inner.name,
                attempts = Empty,
                outcome = Empty,
            )
        } else {
            tracing::Span::none()
        };
        #[cfg(feature = "metrics")]
        let started_at: Started = Some(pipeline.inner.clock.now());
        #[cfg(not(feature = "metrics"))]
        #[allow(clippy::let_unit_value)]
        let started_at: Started = ();
        let entered = (!span.is_disabled()).then(|| span.enter());
        if ctx.is_cancelled() {
            drop(entered);
            return finish(pipeline, &span, &started_at, 0, Err(cancelled(ctx)), 0);
        }
        // Anything but an attempt settled at once with no retry to follow keeps
        // its state in `rest` and goes on in `poll_later`.
        let now = pipeline.start();
        if !pipeline.inner.plain && pipeline.starts_slow(retry) {
            drop(entered);
            let total = pipeline.times(now);
            return start_slow(this, cx, span, started_at, total, Resume::Start);
        }
        // The strategies are asked one by one, each refusal leaving at once: a
        // permit that never travels in a combined result stays in registers.
        #[allow(unused_variables)]
        let layers = &pipeline.inner.layers;
        #[cfg(feature = "breaker")]
        let permit: BreakerPermit<'a, C> = match &layers.breaker {
            Some(breaker) => match breaker.try_acquire() {
                Ok(permit) => Some(permit),
                Err(rejected) => {
                    drop(entered);
                    let total = pipeline.times(now);
                    return refused(this, cx, span, started_at, total, rejected.rejection());
                }
            },
            None => None,
        };
        #[cfg(not(feature = "breaker"))]
        let permit: BreakerPermit<'a, C> = std::marker::PhantomData;
        #[cfg(feature = "limit")]
        let slot = {
            if let Some(limiter) = &layers.rate_limiter {
                if let Err(limited) = limiter.check() {
                    drop(entered);
                    // Let go before the refusal goes on: a half-open probe's slot
                    // is free again for a retry.
                    #[cfg_attr(not(feature = "breaker"), allow(dropping_copy_types))]
                    drop(permit);
                    let total = pipeline.times(now);
                    return refused(this, cx, span, started_at, total, limited.rejection());
                }
            }
            match &layers.bulkhead {
                Some(bulkhead) => bulkhead.try_acquire_uncounted(),
                None => None,
            }
        };
        #[cfg(not(feature = "limit"))]
        let slot: Option<BulkheadPermit<'a>> = None;
        let Some(call) = this.call.as_mut() else {
            // Not reached: the call is only taken for the boxed path.
            return Poll::Pending;
        };
        // A bulkhead that was full at the first try is waited on (its queue) in
        // the boxed path, which makes the call only once it has a slot.
        #[cfg(feature = "limit")]
        if slot.is_none() && pipeline.inner.layers.bulkhead.is_some() {
            drop(entered);
            let total = pipeline.times(now);
            return start_slow(this, cx, span, started_at, total, Resume::Waiting(permit));
        }

        let own = if TRACED {
            tracing::debug_span!(
                "palisade.attempt",
                attempt = 1u32,
                outcome = Empty,
                error.kind = Empty
            )
        } else {
            tracing::Span::none()
        };
        let polled = {
            let _attempt = (!own.is_disabled()).then(|| own.enter());
            let mut fut = this.fut.as_mut();
            // One guard for the call and the first poll of its future: a panic in
            // the call itself, before it returns its future, is the attempt's
            // panic too.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fut.set(Some(call(pipeline.first_context(ctx, now))));
                match fut.as_mut().as_pin_mut() {
                    Some(fut) => fut.poll(cx),
                    None => Poll::Pending,
                }
            }))
        };
        let settled = match polled {
            Ok(Poll::Ready(result)) => {
                this.fut.set(None);
                let outcome = pipeline.inner.classifier.classify(&result);
                if TRACED && result.is_err() {
                    note_error(&own, "error");
                }
                pipeline.attempt_done(permit, slot, TRACED.then_some(&own), outcome);
                if !pipeline.retries(retry, &outcome) {
                    drop(entered);
                    let result = result.map_err(|e| Error::inner(e, outcome));
                    let ready = finish(pipeline, &span, &started_at, now, result, 1);
                    release::<TRACED>(own);
                    release::<TRACED>(span);
                    return ready;
                }
                (result.map_err(|e| Error::inner(e, outcome)), outcome)
            }
            Ok(Poll::Pending) => {
                drop(entered);
                let parked = Park::attempt(permit, slot, own);
                let total = pipeline.times(now);
                return park(this, cx, span, started_at, total, parked, None);
            }
            Err(payload) => {
                this.fut.set(None);
                let (result, outcome) = panicked(&*payload);
                if TRACED {
                    note_error(&own, "panicked");
                }
                pipeline.attempt_done(permit, slot, TRACED.then_some(&own), outcome);
                if !pipeline.retries(retry, &outcome) {
                    drop(entered);
                    return finish(pipeline, &span, &started_at, now, result, 1);
                }
                (result, outcome)
            }
        };
        drop(entered);
        let parked = Park::attempt(Default::default(), None, own);
        let total = pipeline.times(now);
        park(this, cx, span, started_at, total, parked, Some(settled))
    }
}

/// Moves what the first poll holds into `rest` and goes on in `poll_later`.
#[inline(never)]
fn park<'a, K, C, T, E, F, Fut, S>(
    mut this: ExecuteProj<'_, 'a, K, C, T, E, F, Fut, S>,
    cx: &mut task::Context<'_>,
    span: tracing::Span,
    started_at: Started,
    total: Times,
    parked: Park<'a, C, S>,
    settled: Option<Settled<T, E>>,
) -> Poll<Result<T, Error<E>>>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    this.rest
        .set(Some(parked.into_rest(span, started_at, total)));
    poll_later(this, cx, settled, true)
}

/// Starts the boxed path at `resume` in the first poll.
#[inline(never)]
fn start_slow<'a, K, C, T, E, F, Fut, S>(
    this: ExecuteProj<'_, 'a, K, C, T, E, F, Fut, S>,
    cx: &mut task::Context<'_>,
    span: tracing::Span,
    started_at: Started,
    total: Times,
    resume: Resume<'a, C, T, E>,
) -> Poll<Result<T, Error<E>>>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    let mut parked = Park::empty();
    if let Some(call) = this.call.take() {
        let slow = (this.make_slow)(this.pipeline, this.ctx, total, call, *this.retry, resume);
        parked.slow = Some(Box::pin(slow));
    }
    park(this, cx, span, started_at, total, parked, None)
}

/// The first attempt refused by the breaker or a limit in the first poll.
#[cold]
#[inline(never)]
#[cfg_attr(not(any(feature = "breaker", feature = "limit")), allow(dead_code))]
fn refused<'a, K, C, T, E, F, Fut, S>(
    this: ExecuteProj<'_, 'a, K, C, T, E, F, Fut, S>,
    cx: &mut task::Context<'_>,
    span: tracing::Span,
    started_at: Started,
    total: Times,
    rejection: Rejection,
) -> Poll<Result<T, Error<E>>>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    let pipeline: &'a Pipeline<K, C> = this.pipeline;
    let settled = {
        let _entered = (!span.is_disabled()).then(|| span.enter());
        let own = tracing::debug_span!(
            "palisade.attempt",
            attempt = 1u32,
            outcome = Empty,
            error.kind = Empty
        );
        let (result, outcome) = pipeline.rejected_attempt(&own, rejection);
        if !pipeline.retries(*this.retry, &outcome) {
            return finish(pipeline, &span, &started_at, total.start, result, 1);
        }
        (result, outcome)
    };
    park(
        this,
        cx,
        span,
        started_at,
        total,
        Park::empty(),
        Some(settled),
    )
}

/// Ends a span of the first poll: untraced, it is `Span::none()`, which holds
/// nothing, and is let go without the check its drop would make.
#[inline(always)]
fn release<const TRACED: bool>(span: tracing::Span) {
    if TRACED {
        drop(span);
    } else {
        std::mem::forget(span);
    }
}

/// What the first poll hands on to `rest` besides the execution's span and start.
struct Park<'a, C: Clock, S> {
    permit: BreakerPermit<'a, C>,
    slot: Option<BulkheadPermit<'a>>,
    attempt_span: tracing::Span,
    slow: Option<Pin<Box<S>>>,
}

impl<'a, C: Clock, S> Park<'a, C, S> {
    #[inline]
    fn empty() -> Self {
        Park {
            permit: Default::default(),
            slot: None,
            attempt_span: tracing::Span::none(),
            slow: None,
        }
    }

    #[inline]
    fn attempt(
        permit: BreakerPermit<'a, C>,
        slot: Option<BulkheadPermit<'a>>,
        attempt_span: tracing::Span,
    ) -> Self {
        Park {
            permit,
            slot,
            attempt_span,
            slow: None,
        }
    }

    #[inline]
    fn into_rest(
        self,
        span: tracing::Span,
        started_at: Started,
        total_deadline: Times,
    ) -> Rest<'a, C, S> {
        Rest {
            permit: self.permit,
            slot: self.slot,
            attempt_span: self.attempt_span,
            attempt_timer: None,
            slow: self.slow,
            total: None,
            cancelled: None,
            span,
            started_at,
            total_deadline,
        }
    }
}

/// Every poll of an execution but a first poll that finished it. `fresh` is the
/// first poll going on: the context was checked and the first attempt polled,
/// and `settled` holds that attempt if it settled and the retry takes over.
#[inline(never)]
fn poll_later<'a, K, C, T, E, F, Fut, S>(
    mut this: ExecuteProj<'_, 'a, K, C, T, E, F, Fut, S>,
    cx: &mut task::Context<'_>,
    mut settled: Option<Settled<T, E>>,
    fresh: bool,
) -> Poll<Result<T, Error<E>>>
where
    F: FnMut(Context) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    K: Classify<T, E>,
    C: Clock,
    S: Future<Output = (Result<T, Error<E>>, u32)>,
{
    let pipeline: &'a Pipeline<K, C> = this.pipeline;
    let ctx: &'a Context = this.ctx;
    let Some(rest) = this.rest.as_mut().as_pin_mut() else {
        unreachable!("the first poll leaves `rest` set unless it finished");
    };
    let mut rest = rest.project();
    let span = &*rest.span;
    let _entered = (!span.is_disabled()).then(|| span.enter());
    if !fresh && ctx.is_cancelled() {
        abandon(this.fut, rest.slow, rest.permit, rest.slot);
        return finish(
            pipeline,
            span,
            rest.started_at,
            rest.total_deadline.start,
            Err(cancelled(ctx)),
            0,
        );
    }
    if let Some(fut) = this.fut.as_mut().as_pin_mut() {
        let attempt_span = &*rest.attempt_span;
        let polled = if fresh {
            // Polled already in this poll, by the first poll's own path.
            Ok(Poll::Pending)
        } else {
            let _attempt = (!attempt_span.is_disabled()).then(|| attempt_span.enter());
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(cx)))
        };
        let done = match polled {
            Ok(Poll::Ready(result)) => {
                let outcome = pipeline.inner.classifier.classify(&result);
                Some((result.map_err(|e| Error::inner(e, outcome)), outcome))
            }
            Ok(Poll::Pending) => match pipeline.inner.layers.attempt_timeout {
                None => None,
                Some(limit) => {
                    if rest.attempt_timer.is_none() {
                        let sleep = pipeline.inner.clock.sleep(limit);
                        rest.attempt_timer.set(Some(sleep));
                    }
                    let fired = rest
                        .attempt_timer
                        .as_mut()
                        .as_pin_mut()
                        .is_some_and(|timer| timer.poll(cx).is_ready());
                    fired.then(|| {
                        pipeline.inner.tally.timed_out();
                        (
                            Err(Error::timeout(TimeoutKind::Attempt, limit)),
                            Outcome::transient(),
                        )
                    })
                }
            },
            Err(payload) => Some(panicked(&*payload)),
        };
        if let Some((result, outcome)) = done {
            this.fut.set(None);
            rest.attempt_timer.set(None);
            let permit = std::mem::take(rest.permit);
            let slot = rest.slot.take();
            if let Err(error) = &result {
                note_error(attempt_span, error.kind_str());
            }
            pipeline.attempt_done(permit, slot, Some(attempt_span), outcome);
            settled = Some((result, outcome));
        }
    }
    if let Some((result, outcome)) = settled {
        if !pipeline.retries(*this.retry, &outcome) {
            return finish(
                pipeline,
                span,
                rest.started_at,
                rest.total_deadline.start,
                result,
                1,
            );
        }
        match this.call.take() {
            Some(call) => {
                let resume = Resume::Retry(result, outcome);
                let total = *rest.total_deadline;
                let slow = (this.make_slow)(pipeline, ctx, total, call, *this.retry, resume);
                *rest.slow = Some(Box::pin(slow));
            }
            // Not reached: the call is only taken for the boxed path.
            None => {
                return finish(
                    pipeline,
                    span,
                    rest.started_at,
                    rest.total_deadline.start,
                    result,
                    1,
                );
            }
        }
    }
    if let Some(slow) = rest.slow.as_mut() {
        if let Poll::Ready((result, attempts)) = slow.as_mut().poll(cx) {
            *rest.slow = None;
            return finish(
                pipeline,
                span,
                rest.started_at,
                rest.total_deadline.start,
                result,
                attempts,
            );
        }
    }
    // Pending: the total timeout, armed at the first pending poll, and the
    // caller's context.
    if let Some(limit) = pipeline.inner.layers.total_timeout {
        if rest.total.is_none() {
            rest.total.set(Some(pipeline.inner.clock.sleep(limit)));
        }
        if let Some(sleep) = rest.total.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                abandon(this.fut, rest.slow, rest.permit, rest.slot);
                pipeline.inner.tally.total_timeout();
                let error = Error::timeout(TimeoutKind::Total, limit);
                return finish(
                    pipeline,
                    span,
                    rest.started_at,
                    rest.total_deadline.start,
                    Err(error),
                    0,
                );
            }
        }
    }
    let waiter = rest.cancelled.get_or_insert_with(|| ctx.cancelled());
    if Pin::new(waiter).poll(cx).is_ready() {
        abandon(this.fut, rest.slow, rest.permit, rest.slot);
        return finish(
            pipeline,
            span,
            rest.started_at,
            rest.total_deadline.start,
            Err(cancelled(ctx)),
            0,
        );
    }
    Poll::Pending
}

/// Drops the work of an execution given up (its context ended or its total
/// timeout fired) before its end is recorded: the call's future, the boxed path,
/// and the first attempt's breaker permit (unrecorded, it counts nothing) and
/// bulkhead slot, so that the bulkhead no longer counts it in flight. The timers
/// and spans go with `rest` once the execution has finished.
#[cold]
fn abandon<C: Clock, Fut, S>(
    mut fut: Pin<&mut Option<Fut>>,
    slow: &mut Option<Pin<Box<S>>>,
    permit: &mut BreakerPermit<'_, C>,
    slot: &mut Option<BulkheadPermit<'_>>,
) {
    fut.set(None);
    *slow = None;
    *permit = Default::default();
    *slot = None;
}

/// Records on an attempt's span how it failed: the `error.kind` of the error
/// (as the execution's final event names it).
#[cold]
fn note_error(span: &tracing::Span, kind: &'static str) {
    if !span.is_disabled() {
        span.record("error.kind", kind);
    }
}

/// The settled attempt of a call that panicked.
#[cold]
fn panicked<T, E>(payload: &(dyn std::any::Any + Send)) -> (Result<T, Error<E>>, Outcome) {
    let panic = palisade_classify::Panicked::from_payload(payload);
    (Err(Error::panicked(panic)), Outcome::Permanent)
}

/// The error of an execution whose context ended.
#[cold]
fn cancelled<E>(ctx: &Context) -> Error<E> {
    Error::cancelled(
        ctx.cause()
            .unwrap_or_else(palisade_context::Cause::canceled),
    )
}

/// Ends an execution: its span's fields and its metrics, when there are any.
#[inline(always)]
fn finish<K, C: Clock, T, E>(
    pipeline: &Pipeline<K, C>,
    span: &tracing::Span,
    started_at: &Started,
    start: u64,
    mut result: Result<T, Error<E>>,
    attempts: u32,
) -> Poll<Result<T, Error<E>>> {
    if !span.is_disabled() || cfg!(feature = "metrics") {
        record_end(pipeline, span, started_at, &result, attempts);
    }
    // A refusal is the cheap answer of a dependency being protected (an open
    // breaker, a full bulkhead): it is not given a story, which would allocate.
    if let Err(error) = &mut result {
        pipeline.inner.tally.execution_failed();
        if !error.is_rejected() {
            tell(pipeline, error, start);
        }
    }
    Poll::Ready(result)
}

/// Gives a failed execution's error the dependency and the time it took.
#[cold]
#[inline(never)]
fn tell<K, C: Clock, E>(pipeline: &Pipeline<K, C>, error: &mut Error<E>, start: u64) {
    let elapsed = (start != 0)
        .then(|| Duration::from_nanos(TokioClock.now().as_nanos().saturating_sub(start)));
    error.set_context(pipeline.inner.name.clone(), elapsed);
}

/// Records the end of an execution in its span and its metrics.
#[inline(never)]
#[allow(unused_variables)]
fn record_end<K, C: Clock, T, E>(
    pipeline: &Pipeline<K, C>,
    span: &tracing::Span,
    started_at: &Started,
    result: &Result<T, Error<E>>,
    attempts: u32,
) {
    let kind = match result {
        Ok(_) => "success",
        Err(e) => e.kind_str(),
    };
    if !span.is_disabled() {
        if attempts > 0 {
            span.record("attempts", attempts);
        }
        span.record("outcome", kind);
        if result.is_err() {
            // The same fields as the attempts' spans, for a log line that tells
            // what the trace shows.
            tracing::debug!(
                parent: span,
                dependency = %pipeline.inner.name,
                attempts,
                error.kind = kind,
                "execution failed"
            );
        }
    }
    #[cfg(feature = "metrics")]
    if let Some(started) = *started_at {
        pipeline.record_metrics(kind, started);
    }
}
