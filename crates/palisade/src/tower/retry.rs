//! The retry as a tower service: the first attempt inline, the retries (after a
//! transient failure) in the policy's executor.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use palisade_classify::{AnyErrorIsTransient, Classify, Outcome, Rejection, Strategy};
use palisade_clock::{Clock, DefaultClock};
use palisade_retry::RetryPolicy;
use tower_layer::Layer;
use tower_service::Service;

use super::ContextOf;
use super::error::{IntoLayerError, LayerError, Name, judge, name};

/// A [`Layer`] that retries the inner service with a [`RetryPolicy`]; see
/// [`retry`](super::retry).
pub struct RetryLayer<K = AnyErrorIsTransient, C: Clock = DefaultClock> {
    shared: Arc<Shared<K, C>>,
}

struct Shared<K, C: Clock> {
    policy: RetryPolicy<C>,
    classifier: K,
    name: Name,
}

impl<C: Clock> RetryLayer<AnyErrorIsTransient, C> {
    /// A layer retrying with `policy` (its backoff, budget, hedging and retry
    /// safety), every `Err` transient, named `"retry"`.
    pub fn new(policy: RetryPolicy<C>) -> Self {
        RetryLayer {
            shared: Arc::new(Shared {
                policy,
                classifier: AnyErrorIsTransient,
                name: name("retry"),
            }),
        }
    }
}

impl<K, C: Clock> RetryLayer<K, C> {
    fn rebuild<K2>(self, classifier: K2, name: Name) -> RetryLayer<K2, C> {
        let policy = self.shared.policy.clone();
        RetryLayer {
            shared: Arc::new(Shared {
                policy,
                classifier,
                name,
            }),
        }
    }

    /// Decides what is retried with `classifier` (over the inner service's
    /// response and its own error): with `HttpStatus`, an `Ok(503)` is retried,
    /// after its `Retry-After` if it has one. A layer's own errors from below
    /// count by [`LayerError::layer_outcome`]: a timeout is retried, a refusal
    /// is not.
    pub fn classifier<K2>(self, classifier: K2) -> RetryLayer<K2, C> {
        let name = self.shared.name.clone();
        self.rebuild(classifier, name)
    }

    /// The name the layer's refusals carry ([`LayerError::layer`]).
    pub fn name(self, name: impl Into<Arc<str>>) -> Self
    where
        K: Clone,
    {
        let classifier = self.shared.classifier.clone();
        self.rebuild(classifier, name.into())
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<C> {
        &self.shared.policy
    }
}

impl<K, C: Clock> Clone for RetryLayer<K, C> {
    fn clone(&self) -> Self {
        RetryLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<K, C: Clock> fmt::Debug for RetryLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("name", &self.shared.name)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S, K, C: Clock> Layer<S> for RetryLayer<K, C> {
    type Service = RetryService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RetryService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`RetryLayer`].
///
/// Each call sends the request to the inner service (the clone of it that
/// `poll_ready` drove, as tower's usual pattern) and keeps a clone of the request
/// and of the service for a retry. A success, or any outcome that is not
/// transient, returns at once: no allocation, no clock reading. A transient
/// failure hands the call to the policy's executor (one allocation): backoff,
/// `Retry-After` hints, the budget, retry safety, the deadline of the request's
/// [`Context`](crate::Context) ([`ContextOf`]). Each retry waits for the inner
/// service's readiness, then calls it with a fresh clone of the request. When
/// retrying stops, the last attempt's result is returned as it is (an `Ok(503)`
/// stays `Ok`); a call whose context ended before any attempt completed fails
/// with [`LayerError::Rejected`] by [`Strategy::Deadline`].
///
/// A policy with hedging runs every call in the executor.
///
/// Readiness is the inner service's.
pub struct RetryService<S, K = AnyErrorIsTransient, C: Clock = DefaultClock> {
    inner: S,
    shared: Arc<Shared<K, C>>,
}

impl<S: Clone, K, C: Clock> Clone for RetryService<S, K, C> {
    fn clone(&self) -> Self {
        RetryService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, K, C: Clock> fmt::Debug for RetryService<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryService")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl<S, K, C: Clock> RetryService<S, K, C> {
    /// The policy.
    pub fn policy(&self) -> &RetryPolicy<C> {
        &self.shared.policy
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

type Flat<S, Req> = LayerError<<<S as Service<Req>>::Error as IntoLayerError>::Inner>;

/// A settled attempt: its result and the classifier's verdict on it.
type Settled<T, E> = (Result<T, E>, Outcome);

/// An attempt as the executor sees it: the verdict travels with the value.
type Judged<T, E> = Result<(T, Outcome), (E, Outcome)>;

/// The boxed rest of a retried call.
type Retried<T, E> = Pin<Box<dyn Future<Output = Result<T, LayerError<E>>> + Send>>;

impl<S, K, C, Req, T> Service<Req> for RetryService<S, K, C>
where
    S: Service<Req, Response = T> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: IntoLayerError,
    <S::Error as IntoLayerError>::Inner: Send + 'static,
    T: Send + 'static,
    K: Classify<T, <S::Error as IntoLayerError>::Inner> + Send + Sync + 'static,
    C: Clock,
    Req: ContextOf + Clone + Send + 'static,
{
    type Response = T;
    type Error = Flat<S, Req>;
    type Future = RetryFuture<S, Req, K, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoLayerError::into_layer_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        // Call the service that was driven to readiness; keep a clone for retries.
        let spare = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, spare);
        if self.shared.policy.hedging().is_some() {
            let shared = self.shared.clone();
            return RetryFuture {
                state: State::Retrying {
                    fut: retried(shared, ready, request, None),
                },
            };
        }
        let kept = request.clone();
        RetryFuture {
            state: State::First {
                fut: ready.call(request),
                rest: Some(Rest {
                    service: ready,
                    request: kept,
                    shared: self.shared.clone(),
                }),
            },
        }
    }
}

/// What a retry needs: the service, the request and the policy.
struct Rest<S, Req, K, C: Clock> {
    service: S,
    request: Req,
    shared: Arc<Shared<K, C>>,
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, Req, K, C: Clock, T, E> where S: Service<Req> {
        First { #[pin] fut: S::Future, rest: Option<Rest<S, Req, K, C>> },
        Retrying { fut: Retried<T, E> },
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`RetryService`] call: the first attempt inline; after a
    /// transient failure, the policy's executor in one allocation.
    #[must_use = "futures do nothing unless polled"]
    pub struct RetryFuture<S, Req, K, C: Clock>
    where
        S: Service<Req>,
        S::Error: IntoLayerError,
    {
        #[pin]
        state: State<S, Req, K, C, S::Response, <S::Error as IntoLayerError>::Inner>,
    }
}

impl<S, Req, K, C: Clock> fmt::Debug for RetryFuture<S, Req, K, C>
where
    S: Service<Req>,
    S::Error: IntoLayerError,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture").finish_non_exhaustive()
    }
}

impl<S, K, C, Req, T> Future for RetryFuture<S, Req, K, C>
where
    S: Service<Req, Response = T> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: IntoLayerError,
    <S::Error as IntoLayerError>::Inner: Send + 'static,
    T: Send + 'static,
    K: Classify<T, <S::Error as IntoLayerError>::Inner> + Send + Sync + 'static,
    C: Clock,
    Req: ContextOf + Clone + Send + 'static,
{
    type Output = Result<T, Flat<S, Req>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let (first, outcome, rest) = match self.as_mut().project().state.project() {
            StateProj::First { fut, rest } => {
                let result = std::task::ready!(fut.poll(cx));
                let rest = rest
                    .take()
                    .expect("a retry future polled after it completed");
                let (result, outcome) = judge(
                    &rest.shared.classifier,
                    result.map_err(IntoLayerError::into_layer_error),
                );
                if !outcome.is_retryable() {
                    // Settled: the call's one deposit into the budget.
                    if let Some(budget) = rest.shared.policy.budget() {
                        budget.deposit();
                    }
                    return Poll::Ready(result);
                }
                (result, outcome, rest)
            }
            StateProj::Retrying { fut } => return fut.as_mut().poll(cx),
        };
        let fut = retried(
            rest.shared,
            rest.service,
            rest.request,
            Some((first, outcome)),
        );
        self.as_mut().project().state.set(State::Retrying { fut });
        match self.project().state.project() {
            StateProj::Retrying { fut } => fut.as_mut().poll(cx),
            StateProj::First { .. } => unreachable!("the state was just set"),
        }
    }
}

/// The rest of a call in the policy's executor, the first attempt's settled
/// result (if it ran) replayed as its first attempt.
#[cold]
#[inline(never)]
fn retried<S, K, C, Req, T>(
    shared: Arc<Shared<K, C>>,
    service: S,
    request: Req,
    first: Option<Settled<T, Flat<S, Req>>>,
) -> Retried<T, <S::Error as IntoLayerError>::Inner>
where
    S: Service<Req, Response = T> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: IntoLayerError,
    <S::Error as IntoLayerError>::Inner: Send + 'static,
    T: Send + 'static,
    K: Classify<T, <S::Error as IntoLayerError>::Inner> + Send + Sync + 'static,
    C: Clock,
    Req: ContextOf + Clone + Send + 'static,
{
    Box::pin(async move {
        let ctx = request.context().cloned().unwrap_or_default();
        let mut replay = first;
        // Each attempt carries its own verdict, given by value (see `judge`).
        let by_attempt = |r: &Judged<T, Flat<S, Req>>| match r {
            Ok((_, outcome)) | Err((_, outcome)) => *outcome,
        };
        let shared = &shared;
        let result = shared
            .policy
            .retry_with(&ctx, &by_attempt, move |_attempt| {
                let replayed = replay.take();
                let mut service = service.clone();
                let request = request.clone();
                async move {
                    if let Some((result, outcome)) = replayed {
                        return settle(result, outcome);
                    }
                    let ready = std::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(IntoLayerError::into_layer_error);
                    let result = match ready {
                        Ok(()) => service
                            .call(request)
                            .await
                            .map_err(IntoLayerError::into_layer_error),
                        Err(e) => Err(e),
                    };
                    let (result, outcome) = judge(&shared.classifier, result);
                    settle(result, outcome)
                }
            })
            .await;
        match result {
            Ok((value, _)) => Ok(value),
            Err(e) => match e.into_last_error() {
                Some((error, _)) => Err(error),
                None => Err(LayerError::rejected(
                    &shared.name,
                    Rejection::new(Strategy::Deadline),
                )),
            },
        }
    })
}

#[inline(always)]
fn settle<T, E>(result: Result<T, E>, outcome: Outcome) -> Judged<T, E> {
    match result {
        Ok(v) => Ok((v, outcome)),
        Err(e) => Err((e, outcome)),
    }
}
