//! The circuit breaker as a tower service: an open breaker makes it not ready.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use palisade_breaker::{Breaker, OwnedPermit};
use palisade_classify::{AnyErrorIsTransient, Classify};
use palisade_clock::{Clock, DefaultClock};
use tower_layer::Layer;
use tower_service::Service;

use super::BREAKER_RECHECK;
use super::error::{IntoLayerError, LayerError, Name, judge, name};

/// A [`Layer`] that guards the inner service with a [`Breaker`]; see
/// [`breaker`](super::breaker).
pub struct BreakerLayer<K = AnyErrorIsTransient, C: Clock = DefaultClock> {
    breaker: Breaker<C>,
    classifier: K,
    name: Name,
}

impl<C: Clock> BreakerLayer<AnyErrorIsTransient, C> {
    /// A layer over `breaker` (shared: clones of it share the state), counting
    /// every `Err` as a failure, named `"breaker"`.
    pub fn new(breaker: Breaker<C>) -> Self {
        BreakerLayer {
            breaker,
            classifier: AnyErrorIsTransient,
            name: name("breaker"),
        }
    }
}

impl<K, C: Clock> BreakerLayer<K, C> {
    /// Decides what the breaker counts with `classifier` (over the inner service's
    /// response and its own error): with `HttpStatus`, an `Ok(503)` is a failure.
    /// A layer's own errors from below count by [`LayerError::layer_outcome`]. The
    /// classifier is cloned into each call's future: keep it cheap to clone.
    pub fn classifier<K2>(self, classifier: K2) -> BreakerLayer<K2, C> {
        BreakerLayer {
            breaker: self.breaker,
            classifier,
            name: self.name,
        }
    }

    /// The name its refusals carry ([`LayerError::layer`]).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker<C> {
        &self.breaker
    }
}

impl<K: Clone, C: Clock> Clone for BreakerLayer<K, C> {
    fn clone(&self) -> Self {
        BreakerLayer {
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            name: self.name.clone(),
        }
    }
}

impl<K, C: Clock> fmt::Debug for BreakerLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("name", &self.name)
            .field("breaker", &self.breaker.name())
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone, C: Clock> Layer<S> for BreakerLayer<K, C> {
    type Service = BreakerService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            name: self.name.clone(),
            permit: None,
            sleep: None,
        }
    }
}

/// The service made by [`BreakerLayer`].
///
/// **Readiness.** `poll_ready` asks the breaker first and holds its permit for
/// the next `call`. An open breaker makes the service not ready, and it is woken
/// (on the breaker's clock) when the open duration ends; half-open with every
/// probe slot taken, when the first probe's lease runs out; forced open, every
/// [`BREAKER_RECHECK`]. Then the inner service's readiness is asked. Under
/// tower's `load_shed`, an open breaker sheds the call without reaching the inner
/// service; under `balance`, an endpoint whose breaker is open is passed over.
///
/// A `call` without a permit (no `poll_ready` before it) asks the breaker itself
/// and fails with [`LayerError::Rejected`] if it is open.
///
/// **Clones.** A clone does not carry the permit reserved by `poll_ready` (a
/// half-open probe slot stays with the service that took it; dropping the
/// service frees it).
pub struct BreakerService<S, K = AnyErrorIsTransient, C: Clock = DefaultClock> {
    inner: S,
    breaker: Breaker<C>,
    classifier: K,
    name: Name,
    permit: Option<OwnedPermit<C>>,
    sleep: Option<Pin<Box<C::Sleep>>>,
}

impl<S: Clone, K: Clone, C: Clock> Clone for BreakerService<S, K, C> {
    fn clone(&self) -> Self {
        BreakerService {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            name: self.name.clone(),
            permit: None,
            sleep: None,
        }
    }
}

impl<S, K, C: Clock> fmt::Debug for BreakerService<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("name", &self.name)
            .field("reserved", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, K, C: Clock> BreakerService<S, K, C> {
    /// The breaker.
    pub fn breaker(&self) -> &Breaker<C> {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    #[inline]
    fn poll_permit(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.permit.is_some() {
            return Poll::Ready(());
        }
        if self.sleep.is_none() {
            if let Ok(permit) = self.breaker.try_acquire_owned() {
                self.permit = Some(permit);
                return Poll::Ready(());
            }
        }
        self.poll_slow(cx)
    }

    #[cold]
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        // Bounded: a sleep over at once means the breaker's time has come.
        for _ in 0..4 {
            if let Some(sleep) = &mut self.sleep {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            match self.breaker.try_acquire_owned() {
                Ok(permit) => {
                    self.permit = Some(permit);
                    return Poll::Ready(());
                }
                Err(rejected) => {
                    let wait = rejected.retry_after().unwrap_or(BREAKER_RECHECK);
                    self.sleep = Some(Box::pin(self.breaker.clock().sleep(wait)));
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S, K, C, Req, T> Service<Req> for BreakerService<S, K, C>
where
    S: Service<Req, Response = T>,
    S::Error: IntoLayerError,
    K: Classify<T, <S::Error as IntoLayerError>::Inner> + Clone,
    C: Clock,
{
    type Response = T;
    type Error = LayerError<<S::Error as IntoLayerError>::Inner>;
    type Future = BreakerFuture<S::Future, K, C, <S::Error as IntoLayerError>::Inner>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.poll_permit(cx));
        self.inner
            .poll_ready(cx)
            .map_err(IntoLayerError::into_layer_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let permit = match self.permit.take() {
            Some(permit) => permit,
            None => match self.breaker.try_acquire_owned() {
                Ok(permit) => permit,
                Err(rejected) => {
                    return BreakerFuture {
                        kind: Guarded::Refused {
                            error: Some(LayerError::rejected(&self.name, rejected.rejection())),
                        },
                    };
                }
            },
        };
        BreakerFuture {
            kind: Guarded::Call {
                fut: self.inner.call(request),
                permit: Some(permit),
                classifier: self.classifier.clone(),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = GuardedProj]
    enum Guarded<F, K, C: Clock, E> {
        Call { #[pin] fut: F, permit: Option<OwnedPermit<C>>, classifier: K },
        Refused { error: Option<LayerError<E>> },
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`BreakerService`] call: it hands the call's outcome, by
    /// the layer's classifier, to the breaker. Dropped before the call ends, it
    /// counts nothing (and frees a probe slot).
    #[must_use = "futures do nothing unless polled"]
    pub struct BreakerFuture<F, K, C: Clock, E> {
        #[pin]
        kind: Guarded<F, K, C, E>,
    }
}

impl<F, K, C: Clock, E> fmt::Debug for BreakerFuture<F, K, C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerFuture").finish_non_exhaustive()
    }
}

impl<F, K, C, T, E> Future for BreakerFuture<F, K, C, <E as IntoLayerError>::Inner>
where
    F: Future<Output = Result<T, E>>,
    E: IntoLayerError,
    K: Classify<T, E::Inner>,
    C: Clock,
{
    type Output = Result<T, LayerError<E::Inner>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            GuardedProj::Call {
                fut,
                permit,
                classifier,
            } => {
                let result = std::task::ready!(fut.poll(cx));
                let (result, outcome) = judge(
                    &*classifier,
                    result.map_err(IntoLayerError::into_layer_error),
                );
                if let Some(permit) = permit.take() {
                    permit.record(outcome);
                }
                Poll::Ready(result)
            }
            GuardedProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("a breaker future polled after it completed"))),
        }
    }
}
