//! [`Pipeline`]: every strategy around a call, in an order that cannot be got wrong.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use palisade_classify::{AnyErrorIsTransient, Classify, Outcome, catch_panic};
use palisade_clock::TokioClock;
use palisade_context::Context;
use palisade_fallback::Fallback;
use tracing::Instrument;
use tracing::field::Empty;

use crate::error::{ConfigError, Error, TimeoutKind};
use crate::timeout::timeout;

/// The longest timeout a pipeline accepts: one day. Anything longer is a
/// configuration mistake (a unit confusion), not a limit.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

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
pub struct Pipeline<K = AnyErrorIsTransient> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    name: Cow<'static, str>,
    classifier: K,
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
}

impl<K> Clone for Pipeline<K> {
    fn clone(&self) -> Self {
        Pipeline {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for Pipeline<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("name", &self.inner.name)
            .field("total_timeout", &self.inner.total_timeout)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Pipeline`]; every layer starts absent.
pub struct PipelineBuilder<K = AnyErrorIsTransient> {
    name: Cow<'static, str>,
    classifier: K,
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
}

impl<K> fmt::Debug for PipelineBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("name", &self.name)
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
        PipelineBuilder {
            name: name.into(),
            classifier: AnyErrorIsTransient,
            total_timeout: None,
            attempt_timeout: None,
        }
    }
}

fn check_timeout(field: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(ConfigError::new(
            field,
            format!("must be more than 0 and at most 24h (got {d:?})"),
        ));
    }
    Ok(())
}

impl<K> PipelineBuilder<K> {
    /// Decides the outcome of each attempt from its result.
    pub fn classifier<K2>(self, classifier: K2) -> PipelineBuilder<K2> {
        PipelineBuilder {
            name: self.name,
            classifier,
            total_timeout: self.total_timeout,
            attempt_timeout: self.attempt_timeout,
        }
    }

    /// Limits the whole execution, retries and their waits included.
    pub fn total_timeout(mut self, limit: Duration) -> Self {
        self.total_timeout = Some(limit);
        self
    }

    /// Limits each attempt on its own.
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = Some(limit);
        self
    }

    /// The pipeline, or the first setting out of range.
    pub fn build(self) -> Result<Pipeline<K>, ConfigError> {
        if let Some(d) = self.total_timeout {
            check_timeout("total_timeout", d)?;
        }
        if let Some(d) = self.attempt_timeout {
            check_timeout("attempt_timeout", d)?;
        }
        Ok(Pipeline {
            inner: Arc::new(Inner {
                name: self.name,
                classifier: self.classifier,
                total_timeout: self.total_timeout,
                attempt_timeout: self.attempt_timeout,
            }),
        })
    }
}

impl<K> Pipeline<K> {
    /// The name of the dependency.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The classifier.
    pub fn classifier(&self) -> &K {
        &self.inner.classifier
    }

    /// Runs `call` through every layer.
    ///
    /// `call` is invoked once per attempt with a clone of the caller's context (one
    /// or two reference-count increments, no allocation). Its result is classified
    /// by the pipeline's classifier: an `Ok` that the classifier calls a failure
    /// (an HTTP 503) is retried and counted like an error, and if it is still the
    /// last word it is returned as `Ok`.
    ///
    /// On success with the default layers, nothing is allocated.
    pub async fn execute<T, E, F, Fut>(&self, ctx: &Context, call: F) -> Result<T, Error<E>>
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let span = tracing::debug_span!(
            "palisade.execute",
            dependency = %self.inner.name,
            attempts = Empty,
            outcome = Empty,
        );
        let limit = self.inner.total_timeout;
        let body = timeout(TokioClock, limit, self.attempts(ctx, call));
        async move {
            let (result, attempts) = match ctx.run(body).await {
                Ok(Ok(done)) => done,
                Ok(Err(elapsed)) => (Err(Error::timeout(TimeoutKind::Total, elapsed.after())), 0),
                Err(cause) => (Err(Error::cancelled(cause)), 0),
            };
            let span = tracing::Span::current();
            if attempts > 0 {
                span.record("attempts", attempts);
            }
            match &result {
                Ok(_) => span.record("outcome", "success"),
                Err(e) => span.record("outcome", e.kind_str()),
            };
            result
        }
        .instrument(span)
        .await
    }

    /// The attempts, each through the inner layers. Returns the result and how many
    /// attempts ran.
    async fn attempts<T, E, F, Fut>(&self, ctx: &Context, mut call: F) -> (Result<T, Error<E>>, u32)
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let (result, _outcome) = self.attempt(ctx, &mut call, 1).await;
        (result, 1)
    }

    /// One attempt through the layers inside the retry.
    async fn attempt<T, E, F, Fut>(
        &self,
        ctx: &Context,
        call: &mut F,
        number: u32,
    ) -> (Result<T, Error<E>>, Outcome)
    where
        F: FnMut(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        K: Classify<T, E>,
    {
        let span = tracing::debug_span!("palisade.attempt", attempt = number, outcome = Empty);
        let limit = self.inner.attempt_timeout;
        let fut = timeout(TokioClock, limit, catch_panic(call(ctx.clone())));
        async move {
            let (result, outcome) = match fut.await {
                Ok(Ok(result)) => {
                    let outcome = self.inner.classifier.classify(&result);
                    (result.map_err(|e| Error::inner(e, outcome)), outcome)
                }
                Ok(Err(panic)) => (Err(Error::panicked(panic)), Outcome::Permanent),
                Err(elapsed) => (
                    Err(Error::timeout(TimeoutKind::Attempt, elapsed.after())),
                    Outcome::transient(),
                ),
            };
            tracing::Span::current().record("outcome", tracing::field::display(outcome));
            (result, outcome)
        }
        .instrument(span)
        .await
    }

    /// This pipeline with a fallback chain as its outermost layer: what the
    /// execution answers when everything inside has failed.
    pub fn with_fallback<T, E>(
        &self,
        fallback: Fallback<T, Error<E>, Context>,
    ) -> WithFallback<T, E, K> {
        WithFallback {
            pipeline: self.clone(),
            fallback,
        }
    }
}

/// A [`Pipeline`] with a fallback chain outermost; made by
/// [`Pipeline::with_fallback`].
pub struct WithFallback<T, E, K = AnyErrorIsTransient> {
    pipeline: Pipeline<K>,
    fallback: Fallback<T, Error<E>, Context>,
}

impl<T, E, K> Clone for WithFallback<T, E, K> {
    fn clone(&self) -> Self {
        WithFallback {
            pipeline: self.pipeline.clone(),
            fallback: self.fallback.clone(),
        }
    }
}

impl<T, E, K> fmt::Debug for WithFallback<T, E, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithFallback")
            .field("pipeline", &self.pipeline)
            .field("fallback", &self.fallback)
            .finish()
    }
}

impl<T, E, K> WithFallback<T, E, K> {
    /// The pipeline inside the fallback.
    pub fn pipeline(&self) -> &Pipeline<K> {
        &self.pipeline
    }

    /// Runs `call` through the pipeline; a failure that a tier of the chain
    /// accepts is replaced by that tier's answer.
    ///
    /// When the chain cannot answer, the error is the pipeline's; if a tier failed
    /// too, the error says which ([`Error::is_fallback_failed`]) and keeps the
    /// pipeline's error as its `source()`.
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
        match self.fallback.recover(ctx, result, outcome).await {
            Ok(v) => Ok(v),
            Err(e) => match e.into_parts() {
                (original, None) => Err(original),
                (original, Some((tier, error))) => {
                    Err(Error::fallback_failed(tier, error, original))
                }
            },
        }
    }
}
