//! The attempt timeout as a tower service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use palisade_clock::{Clock, DefaultClock};
use tower_layer::Layer;
use tower_service::Service;

use super::error::{IntoLayerError, LayerError, Name, name};
use crate::timer::{Timeout, timeout};

/// A [`Layer`] that limits each call of the inner service to a time; see
/// [`attempt_timeout`](super::attempt_timeout).
pub struct AttemptTimeoutLayer<C: Clock = DefaultClock> {
    limit: Duration,
    name: Name,
    clock: C,
}

impl AttemptTimeoutLayer {
    /// Each call limited to `limit` (`1ns..=MAX_TIMEOUT`), named `"attempt_timeout"`.
    pub fn new(limit: Duration) -> Result<Self, crate::ConfigError> {
        crate::pipeline::check_timeout("attempt_timeout", limit)?;
        Ok(AttemptTimeoutLayer {
            limit,
            name: name("attempt_timeout"),
            clock: DefaultClock::default(),
        })
    }
}

impl<C: Clock> AttemptTimeoutLayer<C> {
    /// The name its timeouts carry ([`LayerError::layer`]).
    pub fn name(mut self, name: impl Into<std::sync::Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The same limit on another clock (a manual clock in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> AttemptTimeoutLayer<C2> {
        AttemptTimeoutLayer {
            limit: self.limit,
            name: self.name,
            clock,
        }
    }

    /// The limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl<C: Clock> Clone for AttemptTimeoutLayer<C> {
    fn clone(&self) -> Self {
        AttemptTimeoutLayer {
            limit: self.limit,
            name: self.name.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for AttemptTimeoutLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptTimeoutLayer")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .finish()
    }
}

impl<S, C: Clock> Layer<S> for AttemptTimeoutLayer<C> {
    type Service = AttemptTimeout<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            limit: self.limit,
            name: self.name.clone(),
            clock: self.clock.clone(),
        }
    }
}

/// The service made by [`AttemptTimeoutLayer`]: each call of `S` limited in time.
/// Its readiness is the inner service's (waiting for readiness is not timed).
pub struct AttemptTimeout<S, C: Clock = DefaultClock> {
    inner: S,
    limit: Duration,
    name: Name,
    clock: C,
}

impl<S: Clone, C: Clock> Clone for AttemptTimeout<S, C> {
    fn clone(&self) -> Self {
        AttemptTimeout {
            inner: self.inner.clone(),
            limit: self.limit,
            name: self.name.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<S, C: Clock> fmt::Debug for AttemptTimeout<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptTimeout")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock, Req> Service<Req> for AttemptTimeout<S, C>
where
    S: Service<Req>,
    S::Error: IntoLayerError,
{
    type Response = S::Response;
    type Error = LayerError<<S::Error as IntoLayerError>::Inner>;
    type Future = AttemptTimeoutFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(IntoLayerError::into_layer_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        AttemptTimeoutFuture {
            inner: timeout(
                self.clock.clone(),
                Some(self.limit),
                self.inner.call(request),
            ),
            name: Some(self.name.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AttemptTimeout`] call. The call is polled once before a
    /// timer is armed: a call ready on its first poll costs no timer.
    #[must_use = "futures do nothing unless polled"]
    pub struct AttemptTimeoutFuture<F, C: Clock> {
        #[pin]
        inner: Timeout<C, F>,
        name: Option<Name>,
    }
}

impl<F, C: Clock> fmt::Debug for AttemptTimeoutFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttemptTimeoutFuture")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<F, C, T, E> Future for AttemptTimeoutFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Clock,
    E: IntoLayerError,
{
    type Output = Result<T, LayerError<E::Inner>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.inner.poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(result)) => {
                Poll::Ready(result.map_err(IntoLayerError::into_layer_error))
            }
            Poll::Ready(Err(elapsed)) => {
                let layer = this.name.take().unwrap_or_else(|| name("attempt_timeout"));
                Poll::Ready(Err(LayerError::timed_out(&layer, elapsed.after())))
            }
        }
    }
}
