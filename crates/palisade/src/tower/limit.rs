//! The bulkhead and the rate limiter as tower services: both report a full limit
//! through `poll_ready`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use palisade_classify::Strategy;
use palisade_clock::{Clock, DefaultClock};
use palisade_limit::bulkhead::{AcquireOwned, OwnedPermit};
use palisade_limit::{Bulkhead, BulkheadFull, RateLimiter};
use tower_layer::Layer;
use tower_service::Service;

use super::error::{IntoLayerError, LayerError, Name, name};
use super::gate::Gate;

// ---- bulkhead ---------------------------------------------------------------

/// A [`Layer`] that bounds the calls in flight to the inner service with a
/// [`Bulkhead`]; see [`bulkhead`](super::bulkhead).
pub struct BulkheadLayer<C: Clock = DefaultClock> {
    bulkhead: Bulkhead<C>,
    gate: Arc<Gate>,
    name: Name,
}

impl<C: Clock> BulkheadLayer<C> {
    /// A layer over `bulkhead` (shared: clones of it share the permits), named
    /// `"bulkhead"`.
    pub fn new(bulkhead: Bulkhead<C>) -> Self {
        BulkheadLayer {
            bulkhead,
            gate: Arc::default(),
            name: name("bulkhead"),
        }
    }

    /// The name its refusals carry ([`LayerError::layer`]).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead<C> {
        &self.bulkhead
    }
}

impl<C: Clock> Clone for BulkheadLayer<C> {
    fn clone(&self) -> Self {
        BulkheadLayer {
            bulkhead: self.bulkhead.clone(),
            gate: self.gate.clone(),
            name: self.name.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for BulkheadLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("name", &self.name)
            .field("bulkhead", &self.bulkhead)
            .finish()
    }
}

impl<S, C: Clock> Layer<S> for BulkheadLayer<C> {
    type Service = BulkheadService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BulkheadService {
            inner,
            bulkhead: self.bulkhead.clone(),
            gate: self.gate.clone(),
            name: self.name.clone(),
            permit: None,
            waiting: None,
            refused: None,
            parked: false,
        }
    }
}

/// A permit of the layer's bulkhead; dropping it wakes the layer's services
/// waiting for one.
struct Slot {
    permit: Option<OwnedPermit>,
    gate: Arc<Gate>,
}

impl Drop for Slot {
    #[inline]
    fn drop(&mut self) {
        drop(self.permit.take());
        self.gate.released();
    }
}

/// The service made by [`BulkheadLayer`].
///
/// **Readiness.** `poll_ready` takes a permit and holds it for the next `call`
/// (as tower's `ConcurrencyLimit` does). When the bulkhead is full the service is
/// not ready: with a queue ([`BulkheadConfig::with_queue`](palisade_limit::BulkheadConfig::with_queue))
/// it waits in it, woken by the bulkhead when its turn comes; if the queue is
/// full, its wait runs out or the bulkhead is closed, it becomes ready and the
/// next call fails at once with [`LayerError::Rejected`] without reaching the
/// inner service. Without a queue it is woken when a call through a service of
/// the same layer ends (a permit released by another holder of the same
/// `Bulkhead` is seen at the next `poll_ready`). Under tower's `load_shed`, a full
/// bulkhead sheds the call.
///
/// **Clones.** A clone does not carry the permit reserved by `poll_ready`: each
/// clone reserves its own, so a `Buffer` in front (one worker, one service) holds
/// at most one reserved permit. A service dropped with a reserved permit gives it
/// back.
///
/// **Counting.** Each time `poll_ready` finds the bulkhead full it counts once in
/// the bulkhead's `rejected`, whether the call then waits or is shed.
pub struct BulkheadService<S, C: Clock = DefaultClock> {
    inner: S,
    bulkhead: Bulkhead<C>,
    gate: Arc<Gate>,
    name: Name,
    permit: Option<OwnedPermit>,
    waiting: Option<Pin<Box<AcquireOwned<C>>>>,
    refused: Option<BulkheadFull>,
    parked: bool,
}

impl<S: Clone, C: Clock> Clone for BulkheadService<S, C> {
    fn clone(&self) -> Self {
        BulkheadService {
            inner: self.inner.clone(),
            bulkhead: self.bulkhead.clone(),
            gate: self.gate.clone(),
            name: self.name.clone(),
            permit: None,
            waiting: None,
            refused: None,
            parked: false,
        }
    }
}

impl<S, C: Clock> fmt::Debug for BulkheadService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadService")
            .field("name", &self.name)
            .field("reserved", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock> BulkheadService<S, C> {
    /// The bulkhead.
    pub fn bulkhead(&self) -> &Bulkhead<C> {
        &self.bulkhead
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Drives the permit: `Ready` once it holds one or knows the refusal.
    #[inline]
    fn poll_permit(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.permit.is_some() || self.refused.is_some() {
            return Poll::Ready(());
        }
        if !self.parked && self.waiting.is_none() {
            match self.bulkhead.try_acquire_owned() {
                Ok(permit) => {
                    self.permit = Some(permit);
                    return Poll::Ready(());
                }
                Err(full) => return self.full(full, cx),
            }
        }
        self.poll_slow(cx)
    }

    #[cold]
    #[inline(never)]
    fn full(&mut self, full: BulkheadFull, cx: &mut TaskContext<'_>) -> Poll<()> {
        if full.is_closed() || full.exceeds_capacity() {
            self.refused = Some(full);
            return Poll::Ready(());
        }
        if self.bulkhead.snapshot().max_queue > 0 {
            self.waiting = Some(Box::pin(self.bulkhead.acquire_owned()));
        } else {
            self.parked = true;
        }
        self.poll_slow(cx)
    }

    #[cold]
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if let Some(waiting) = &mut self.waiting {
            let answer = std::task::ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
            match answer {
                Ok(permit) => self.permit = Some(permit),
                Err(refused) => self.refused = Some(refused),
            }
            return Poll::Ready(());
        }
        // Parked: look (uncounted) for a free permit after registering, so that a
        // release between the look and the registration is not missed.
        self.gate.park(cx.waker());
        if self.bulkhead.try_acquire_uncounted().is_some() {
            // Freed meanwhile: the look's permit went back at once; take one to keep.
            if let Ok(permit) = self.bulkhead.try_acquire_owned() {
                self.parked = false;
                self.permit = Some(permit);
                return Poll::Ready(());
            }
        }
        if self.bulkhead.is_closed() {
            self.parked = false;
            self.refused = Some(
                self.bulkhead
                    .try_acquire_owned()
                    .expect_err("a closed bulkhead refuses"),
            );
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl<S, C: Clock, Req> Service<Req> for BulkheadService<S, C>
where
    S: Service<Req>,
    S::Error: IntoLayerError,
{
    type Response = S::Response;
    type Error = LayerError<<S::Error as IntoLayerError>::Inner>;
    type Future = BulkheadFuture<S::Future, <S::Error as IntoLayerError>::Inner>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.poll_permit(cx));
        if self.refused.is_some() {
            // The call fails without the inner service: its readiness is not asked.
            return Poll::Ready(Ok(()));
        }
        self.inner
            .poll_ready(cx)
            .map_err(IntoLayerError::into_layer_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.permit.take() {
            Some(permit) => BulkheadFuture {
                kind: Kind::Call {
                    fut: self.inner.call(request),
                    slot: Some(Slot {
                        permit: Some(permit),
                        gate: self.gate.clone(),
                    }),
                },
            },
            None => self.refuse(),
        }
    }
}

impl<S, C: Clock> BulkheadService<S, C> {
    #[cold]
    fn refuse<F, E>(&mut self) -> BulkheadFuture<F, E> {
        let rejection = match self.refused.take() {
            Some(full) => full.rejection(),
            // `call` without a `poll_ready` that reserved a permit: tower's
            // contract was broken; refuse rather than exceed the limit.
            None => palisade_classify::Rejection::new(Strategy::Bulkhead),
        };
        BulkheadFuture {
            kind: Kind::Refused {
                error: Some(LayerError::rejected(&self.name, rejection)),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Call { #[pin] fut: F, slot: Option<Slot> },
        Refused { error: Option<LayerError<E>> },
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`BulkheadService`] call: it holds the call's permit and
    /// gives it back as soon as the call ends (or when dropped).
    #[must_use = "futures do nothing unless polled"]
    pub struct BulkheadFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

impl<F, E> fmt::Debug for BulkheadFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for BulkheadFuture<F, <E as IntoLayerError>::Inner>
where
    F: Future<Output = Result<T, E>>,
    E: IntoLayerError,
{
    type Output = Result<T, LayerError<E::Inner>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Call { fut, slot } => {
                let result = std::task::ready!(fut.poll(cx));
                drop(slot.take());
                Poll::Ready(result.map_err(IntoLayerError::into_layer_error))
            }
            KindProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("a bulkhead future polled after it completed"))),
        }
    }
}

// ---- rate limiter -----------------------------------------------------------

/// A [`Layer`] that limits the rate of calls to the inner service with a
/// [`RateLimiter`]; see [`rate_limiter`](super::rate_limiter).
pub struct RateLimiterLayer<C: Clock = DefaultClock> {
    limiter: RateLimiter<C>,
    name: Name,
}

impl<C: Clock> RateLimiterLayer<C> {
    /// A layer over `limiter` (shared: clones of it share the rate), named
    /// `"rate_limiter"`.
    pub fn new(limiter: RateLimiter<C>) -> Self {
        RateLimiterLayer {
            limiter,
            name: name("rate_limiter"),
        }
    }

    /// The name its refusals carry ([`LayerError::layer`]).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter<C> {
        &self.limiter
    }
}

impl<C: Clock> Clone for RateLimiterLayer<C> {
    fn clone(&self) -> Self {
        RateLimiterLayer {
            limiter: self.limiter.clone(),
            name: self.name.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for RateLimiterLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterLayer")
            .field("name", &self.name)
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<S, C: Clock> Layer<S> for RateLimiterLayer<C> {
    type Service = RateLimiterService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimiterService {
            inner,
            limiter: self.limiter.clone(),
            name: self.name.clone(),
            token: false,
            sleep: None,
        }
    }
}

/// The service made by [`RateLimiterLayer`].
///
/// **Readiness.** `poll_ready` takes the call's token and holds it for the next
/// `call`, as tower's `RateLimit` does: without a token the service is not ready,
/// and it is woken (on the limiter's clock) when the next one is due. Under tower's
/// `load_shed`, a call over the rate is shed. A token taken by `poll_ready` is
/// spent even if no call follows. Each time `poll_ready` finds no token counts once
/// in the limiter's `rejected`.
///
/// **Clones.** A clone does not carry the token reserved by `poll_ready`.
pub struct RateLimiterService<S, C: Clock = DefaultClock> {
    inner: S,
    limiter: RateLimiter<C>,
    name: Name,
    token: bool,
    sleep: Option<Pin<Box<C::Sleep>>>,
}

impl<S: Clone, C: Clock> Clone for RateLimiterService<S, C> {
    fn clone(&self) -> Self {
        RateLimiterService {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            name: self.name.clone(),
            token: false,
            sleep: None,
        }
    }
}

impl<S, C: Clock> fmt::Debug for RateLimiterService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterService")
            .field("name", &self.name)
            .field("reserved", &self.token)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clock> RateLimiterService<S, C> {
    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter<C> {
        &self.limiter
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    #[inline(always)]
    fn poll_token(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.token {
            return Poll::Ready(());
        }
        if self.sleep.is_none() && self.limiter.check().is_ok() {
            self.token = true;
            return Poll::Ready(());
        }
        self.poll_slow(cx)
    }

    #[cold]
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        // Bounded: a sleep that is over at once means the time has come, and the
        // check after it passes unless another caller took the token first.
        for _ in 0..4 {
            if let Some(sleep) = &mut self.sleep {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            match self.limiter.check() {
                Ok(()) => {
                    self.token = true;
                    return Poll::Ready(());
                }
                Err(limited) => {
                    self.sleep = Some(Box::pin(self.limiter.clock().sleep(limited.retry_after())));
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S, C: Clock, Req> Service<Req> for RateLimiterService<S, C>
where
    S: Service<Req>,
    S::Error: IntoLayerError,
{
    type Response = S::Response;
    type Error = LayerError<<S::Error as IntoLayerError>::Inner>;
    type Future = RateLimiterFuture<S::Future, <S::Error as IntoLayerError>::Inner>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.poll_token(cx));
        self.inner
            .poll_ready(cx)
            .map_err(IntoLayerError::into_layer_error)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        if std::mem::take(&mut self.token) || self.limiter.check().is_ok() {
            RateLimiterFuture {
                kind: Plain::Call {
                    fut: self.inner.call(request),
                },
            }
        } else {
            self.refuse()
        }
    }
}

impl<S, C: Clock> RateLimiterService<S, C> {
    /// `call` without a token (no `poll_ready` first) and none free now.
    #[cold]
    fn refuse<F, E>(&mut self) -> RateLimiterFuture<F, E> {
        RateLimiterFuture {
            kind: Plain::Refused {
                error: Some(LayerError::rejected(
                    &self.name,
                    palisade_classify::Rejection::new(Strategy::RateLimiter),
                )),
            },
        }
    }
}

pin_project_lite::pin_project! {
    #[project = PlainProj]
    pub(crate) enum Plain<F, E> {
        Call { #[pin] fut: F },
        Refused { error: Option<LayerError<E>> },
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`RateLimiterService`] call.
    #[must_use = "futures do nothing unless polled"]
    pub struct RateLimiterFuture<F, E> {
        #[pin]
        kind: Plain<F, E>,
    }
}

impl<F, E> fmt::Debug for RateLimiterFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for RateLimiterFuture<F, <E as IntoLayerError>::Inner>
where
    F: Future<Output = Result<T, E>>,
    E: IntoLayerError,
{
    type Output = Result<T, LayerError<E::Inner>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            PlainProj::Call { fut } => fut
                .poll(cx)
                .map(|r| r.map_err(IntoLayerError::into_layer_error)),
            PlainProj::Refused { error } => Poll::Ready(Err(error
                .take()
                .expect("a rate limiter future polled after it completed"))),
        }
    }
}
