use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use palisade_classify::{Classify, Outcome};

use crate::{BoxError, Compensator, Detach, FallbackError, Trigger};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type ValueFn<T, E> = Arc<dyn Fn(&Failure<'_, T, E>) -> T + Send + Sync>;
type SourceFn<T, E, C> =
    Arc<dyn Fn(&C, &Failure<'_, T, E>) -> BoxFuture<Result<T, BoxError>> + Send + Sync>;
type CompensateFn<T, E, C> =
    Arc<dyn Fn(&C, &Failure<'_, T, E>) -> Result<(), crate::CompensationRefused> + Send + Sync>;

/// The failed result a tier is asked to replace, with its outcome.
pub struct Failure<'a, T, E> {
    result: &'a Result<T, E>,
    outcome: Outcome,
}

impl<'a, T, E> Failure<'a, T, E> {
    fn new(result: &'a Result<T, E>, outcome: Outcome) -> Self {
        Failure { result, outcome }
    }

    /// The outcome the classifier gave the result.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The whole result (an `Ok` can be a failure: an HTTP 503 response).
    pub fn result(&self) -> &'a Result<T, E> {
        self.result
    }

    /// The error, if the result is one.
    pub fn error(&self) -> Option<&'a E> {
        self.result.as_ref().err()
    }
}

impl<T, E> fmt::Debug for Failure<'_, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("outcome", &self.outcome)
            .field("is_err", &self.result.is_err())
            .finish()
    }
}

enum Action<T, E, C> {
    Value(ValueFn<T, E>),
    Source(SourceFn<T, E, C>),
    Compensate(CompensateFn<T, E, C>),
}

struct Tier<T, E, C> {
    name: Cow<'static, str>,
    trigger: Trigger<T, E>,
    action: Action<T, E, C>,
}

/// A tiered fallback chain: what to answer when a call fails.
///
/// Tiers are tried in the order they were added; each steps in only for the
/// outcomes its [`Trigger`] accepts:
///
/// - a **value** tier ([`value`](FallbackBuilder::value),
///   [`value_with`](FallbackBuilder::value_with)) answers at once with a static or
///   computed default;
/// - a **source** tier ([`source`](FallbackBuilder::source)) asks an alternate
///   async source (a backup service, a stale cache); if it fails the chain moves on;
/// - a **compensation** tier ([`compensate`](FallbackBuilder::compensate)) starts a
///   background task, owned by a [`Compensator`], that records or retries the failed
///   work with a detached context (the caller's values, not its cancellation). It
///   answers nothing itself: the chain moves on, so put a value tier after it for the
///   immediate answer ("accepted, will be processed").
///
/// The first tier that produces a value wins. When tiers applied and all failed, the
/// error names the last failed tier and keeps the original error as its source.
///
/// `C` is the context type the tiers see (`()` for none). The chain is cheap to clone
/// (one `Arc`). A success never reaches a tier and costs nothing.
///
/// ```
/// use palisade_classify::Outcome;
/// use palisade_fallback::{Fallback, Trigger};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let chain: Fallback<String, std::io::Error> = Fallback::builder()
///     .source(Trigger::transient(), |_ctx, _failure| async {
///         Err::<String, _>(std::io::Error::other("the stale cache is empty"))
///     })
///     .named("stale-cache")
///     .value(Trigger::failures(), "unknown".to_owned())
///     .build();
///
/// let failed = Err(std::io::ErrorKind::ConnectionReset.into());
/// let answer = chain.recover(&(), failed, Outcome::transient()).await.unwrap();
/// assert_eq!(answer, "unknown");
/// # }
/// ```
pub struct Fallback<T, E, C = ()> {
    tiers: Arc<[Tier<T, E, C>]>,
}

impl<T, E, C> Clone for Fallback<T, E, C> {
    fn clone(&self) -> Self {
        Fallback {
            tiers: self.tiers.clone(),
        }
    }
}

impl<T, E, C> fmt::Debug for Fallback<T, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tiers.iter().map(|t| {
                let kind = match t.action {
                    Action::Value(_) => "value",
                    Action::Source(_) => "source",
                    Action::Compensate(_) => "compensate",
                };
                (kind, &t.name, &t.trigger)
            }))
            .finish()
    }
}

/// Builds a [`Fallback`] chain, tier by tier.
pub struct FallbackBuilder<T, E, C = ()> {
    tiers: Vec<Tier<T, E, C>>,
}

impl<T, E, C> fmt::Debug for FallbackBuilder<T, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("tiers", &self.tiers.len())
            .finish()
    }
}

impl<T, E, C> Fallback<T, E, C> {
    /// A builder with no tier.
    pub fn builder() -> FallbackBuilder<T, E, C> {
        FallbackBuilder { tiers: Vec::new() }
    }

    /// How many tiers the chain has.
    pub fn len(&self) -> usize {
        self.tiers.len()
    }

    /// Whether the chain has no tier (it then returns every failure unchanged).
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Replaces a failed `result` whose outcome is `outcome`, tier by tier.
    ///
    /// - A success is returned as it is (an `Err` that the classifier called a
    ///   success is returned as an unhandled error).
    /// - The first tier that applies and produces a value wins.
    /// - When no tier produced a value, an `Err` is returned as a
    ///   [`FallbackError`] (naming the last failed tier, if any), and an `Ok` that
    ///   was classified as a failure is returned as it was.
    ///
    /// The chain hands `ctx` to its tiers but does not watch it itself: a source
    /// that gives up because the caller's context ended is a failed tier here.
    /// Callers that have a cancellation to report check their context when the
    /// chain fails, and stop awaiting the recovery when it ends (the `palisade`
    /// pipeline's `with_fallback` does both and reports the cancellation).
    pub async fn recover(
        &self,
        ctx: &C,
        result: Result<T, E>,
        outcome: Outcome,
    ) -> Result<T, FallbackError<E>> {
        if outcome.is_success() || self.tiers.is_empty() {
            return result.map_err(|e| FallbackError::new(e, None, false));
        }
        let mut failed: Option<(Cow<'static, str>, BoxError)> = None;
        let mut compensating = false;
        for tier in self.tiers.iter() {
            if !tier.trigger.matches(&result, &outcome) {
                continue;
            }
            match &tier.action {
                Action::Value(make) => {
                    tracing::debug!(tier = %tier.name, %outcome, "fallback value served");
                    return Ok(make(&Failure::new(&result, outcome)));
                }
                Action::Source(source) => {
                    let fut = source(ctx, &Failure::new(&result, outcome));
                    match fut.await {
                        Ok(v) => {
                            tracing::debug!(tier = %tier.name, %outcome, "fallback source served");
                            return Ok(v);
                        }
                        Err(e) => {
                            tracing::warn!(tier = %tier.name, error = %e, "fallback source failed");
                            failed = Some((tier.name.clone(), e));
                        }
                    }
                }
                Action::Compensate(start) => match start(ctx, &Failure::new(&result, outcome)) {
                    Ok(()) => {
                        tracing::debug!(tier = %tier.name, %outcome, "compensation started");
                        compensating = true;
                    }
                    Err(e) => failed = Some((tier.name.clone(), Box::new(e))),
                },
            }
        }
        result.map_err(|e| FallbackError::new(e, failed, compensating))
    }

    /// Classifies `result` with `classifier`, then [`recover`](Self::recover)s it.
    pub async fn recover_with<K>(
        &self,
        ctx: &C,
        result: Result<T, E>,
        classifier: &K,
    ) -> Result<T, FallbackError<E>>
    where
        K: Classify<T, E> + ?Sized,
    {
        let outcome = classifier.classify(&result);
        self.recover(ctx, result, outcome).await
    }
}

impl<T, E, C> FallbackBuilder<T, E, C> {
    fn push(mut self, name: &'static str, trigger: Trigger<T, E>, action: Action<T, E, C>) -> Self {
        self.tiers.push(Tier {
            name: Cow::Borrowed(name),
            trigger,
            action,
        });
        self
    }

    /// Names the tier added last, for logs and metrics (by default `value`,
    /// `source` or `compensate`).
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        if let Some(t) = self.tiers.last_mut() {
            t.name = name.into();
        }
        self
    }

    /// A tier that answers with a clone of `value`.
    pub fn value(self, trigger: Trigger<T, E>, value: T) -> Self
    where
        T: Clone + Send + Sync + 'static,
    {
        self.push(
            "value",
            trigger,
            Action::Value(Arc::new(move |_| value.clone())),
        )
    }

    /// A tier that answers with what `make` computes from the failure.
    pub fn value_with<F>(self, trigger: Trigger<T, E>, make: F) -> Self
    where
        F: Fn(&Failure<'_, T, E>) -> T + Send + Sync + 'static,
    {
        self.push("value", trigger, Action::Value(Arc::new(make)))
    }

    /// A tier that asks an alternate source. `source` receives the context and the
    /// failure, takes what it needs from them and returns an owned future; if that
    /// fails, the chain moves on to the next tier.
    ///
    /// The future is boxed: that happens only when the tier applies, never on a
    /// successful call.
    pub fn source<F, Fut, AE>(self, trigger: Trigger<T, E>, source: F) -> Self
    where
        F: Fn(&C, &Failure<'_, T, E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, AE>> + Send + 'static,
        AE: Into<BoxError>,
    {
        let f = move |ctx: &C, failure: &Failure<'_, T, E>| -> BoxFuture<Result<T, BoxError>> {
            let fut = source(ctx, failure);
            Box::pin(async move { fut.await.map_err(Into::into) })
        };
        self.push("source", trigger, Action::Source(Arc::new(f)))
    }

    /// A tier that starts `task` in the background on `compensator`, handing it the
    /// caller's context detached from its cancellation ([`Detach`]) and the failure.
    ///
    /// `task` takes what it needs from the failure synchronously and returns an
    /// owned future. The chain then moves on: a compensation produces no value. If
    /// the compensator refuses (full, shut down), this tier counts as failed.
    pub fn compensate<F, Fut>(
        self,
        trigger: Trigger<T, E>,
        compensator: &Compensator,
        task: F,
    ) -> Self
    where
        C: Detach,
        F: Fn(C::Detached, &Failure<'_, T, E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let compensator = compensator.clone();
        let f = move |ctx: &C, failure: &Failure<'_, T, E>| {
            compensator.spawn(task(ctx.detach(), failure))
        };
        self.push("compensate", trigger, Action::Compensate(Arc::new(f)))
    }

    /// The chain.
    pub fn build(self) -> Fallback<T, E, C> {
        Fallback {
            tiers: self.tiers.into(),
        }
    }
}
