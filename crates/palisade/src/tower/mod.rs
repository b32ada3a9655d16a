//! Tower middleware: a whole [`Pipeline`] as one [`Layer`], and each strategy on
//! its own as a tower `Service` of its own.
//!
//! # The single-strategy layers
//!
//! [`retry`], [`breaker`], [`bulkhead`], [`rate_limiter`] and [`attempt_timeout`]
//! each wrap the inner service in one strategy primitive (palisade-retry's
//! `RetryPolicy`, palisade-breaker's `Breaker`, palisade-limit's `Bulkhead` and
//! `RateLimiter`, the attempt timer) with a named response future: no `Box`, no
//! allocation and no lock on a healthy call. Each has a name
//! (`.name("payments")`), carried by its refusals, and the retry and the breaker
//! take a [`Classify`] (`.classifier(HttpStatus)`), so that an `Ok(503)` through
//! `retry ∘ breaker` is retried and counted as a failure.
//!
//! **One flat error.** Every layer fails with [`LayerError<E>`]: the inner
//! service's own error `E` ([`LayerError::Inner`]), a refusal by a named layer
//! ([`LayerError::Rejected`]) or an attempt timeout ([`LayerError::TimedOut`]). A
//! layer over another layer's service recognises its `LayerError<E>` and passes it
//! through ([`IntoLayerError`]), so a stack never nests: `retry ∘ breaker ∘
//! attempt_timeout` over a service failing with `std::io::Error` fails with
//! `LayerError<std::io::Error>`. The inner error type must implement
//! [`IntoLayerError`]; it does for `std::io::Error`, [`BoxError`](crate::BoxError)
//! and other common types, and one line
//! ([`impl_into_layer_error!`](crate::impl_into_layer_error)) adds a type of yours.
//! The retry reads a layer's own errors from below by
//! [`LayerError::layer_outcome`]: it retries a timeout, not a refusal; the breaker
//! counts a timeout as a failure and a refusal not at all.
//!
//! **Backpressure in `poll_ready`.** An open breaker, a full bulkhead and a rate
//! limiter without a token make their service not ready, and it is woken when that
//! changes: the breaker when its open duration ends (a sleep on the breaker's
//! clock), the bulkhead when a permit comes back, the rate limiter when the next
//! token is due. `poll_ready` takes the bulkhead's permit, the limiter's token and
//! the breaker's permit and holds them for the next `call`, as tower's own
//! `ConcurrencyLimit` and `RateLimit` do. So tower's `load_shed` sheds a call
//! that would be refused, without calling the inner service, and `balance`
//! passes over an endpoint whose breaker is open. Without `load_shed`, a caller
//! that awaits readiness (`ServiceExt::ready`, `oneshot`) waits: for the open
//! duration, for a slot, for a token. A bulkhead with a queue waits in it and,
//! when the queue is full or the wait runs out, becomes ready so that the next
//! call fails at once with [`LayerError::Rejected`].
//!
//! **`Buffer` and `Clone`.** A clone of a service does not carry what its
//! original reserved in `poll_ready`: each clone reserves its own permit or token
//! before its call (as with tower's `ConcurrencyLimit`). Behind a `Buffer`, the
//! one worker holds at most one reserved permit and its readiness is the
//! buffer's: a full bulkhead makes the buffer's callers wait in the buffer's
//! channel (put `load_shed` *outside* the `Buffer` to shed instead). A reserved
//! rate-limiter token is spent even if the service is dropped before its call;
//! a reserved bulkhead permit or breaker probe is given back.
//!
//! ```
//! use palisade::breaker::{Breaker, BreakerConfig};
//! use palisade::tower::{LayerError, attempt_timeout, breaker};
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(breaker(Breaker::new(BreakerConfig::default()).unwrap()).name("users"))
//!     .layer(attempt_timeout(Duration::from_millis(100)).unwrap())
//!     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
//! // One flat error type for the whole stack.
//! let answer: Result<u32, LayerError<std::io::Error>> = service.oneshot(21).await;
//! assert_eq!(answer.unwrap(), 42);
//! # }
//! ```
//!
//! # The whole pipeline
//!
//! [`PipelineLayer`] wraps any `Service` whose requests can be cloned (a retry
//! sends the request again) in a pipeline: every call runs through
//! [`Pipeline::execute`], each attempt on a clone of the inner service (tower's
//! usual pattern: services are cheap handles). The error is the pipeline's
//! [`Error`] over the service's error. The context of a call is the one in the
//! request's extensions ([`ContextOf`], for `http::Request` with the `http`
//! feature), or the background context. Its `poll_ready` is not ready while the
//! pipeline's breaker is open or its bulkhead (without a queue) is full (see
//! [`PipelineService`]). A whole pipeline in one layer keeps the order of the
//! strategies right by construction.
//!
//! [`ServerLayer`] is the same for requests that cannot be cloned (an incoming
//! request on a server): one attempt, no retry.
//!
//! ```
//! use palisade::Pipeline;
//! use palisade::tower::PipelineLayer;
//! use std::time::Duration;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let pipeline = Pipeline::builder("echo")
//!     .attempt_timeout(Duration::from_millis(100))
//!     .build()
//!     .unwrap();
//! let service = PipelineLayer::new(pipeline)
//!     .layer(service_fn(|name: &'static str| async move { Ok::<_, std::io::Error>(name.len()) }));
//! let len = service.oneshot("ada").await.unwrap();
//! assert_eq!(len, 3);
//! # }
//! ```
//!
//! The pipeline's execution borrows the pipeline and the context, so the future
//! of a [`PipelineService`] call keeps it on the heap (one allocation per call);
//! the single-strategy layers allocate nothing.
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use palisade_classify::{AnyErrorIsTransient, Classify};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Context, Error, Pipeline};

/// Where a request carries its [`Context`].
///
/// [`PipelineLayer`] and the [`retry`] layer need it for their request type: a
/// type of your own gets it with an empty `impl ContextOf for MyRequest {}` (the
/// call then runs under the background context).
///
/// The default reads none: the call runs under the background context. For
/// `http::Request` (with the `http` feature) it is the `Context` in the request's
/// extensions, if a server layer put one there.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not say where it carries its palisade `Context`",
    label = "this request type needs `palisade::tower::ContextOf`",
    note = "`PipelineLayer` and `palisade::tower::retry` need `Req: ContextOf + Clone`; add `impl palisade::tower::ContextOf for {Self} {{}}` (the call then runs under the background context), or implement `context`/`set_context` to carry one"
)]
pub trait ContextOf {
    /// The request's context, if it carries one.
    fn context(&self) -> Option<&Context> {
        None
    }

    /// Gives the request the context of the attempt it is sent in, so that the
    /// layers inside (the `edge` module's `OutboundLayer`) and the
    /// service see the attempt's deadline. The default keeps none.
    fn set_context(&mut self, ctx: Context) {
        let _ = ctx;
    }
}

#[cfg(feature = "http")]
impl<B> ContextOf for http::Request<B> {
    fn context(&self) -> Option<&Context> {
        self.extensions().get::<Context>()
    }

    fn set_context(&mut self, ctx: Context) {
        self.extensions_mut().insert(ctx);
    }
}

macro_rules! no_context {
    ($($t:ty),*) => { $(impl ContextOf for $t {})* };
}
no_context!(
    (),
    bool,
    u8,
    u16,
    u32,
    u64,
    usize,
    i32,
    i64,
    String,
    &'static str,
    Vec<u8>
);

/// A [`Layer`] that runs every call of the inner service through a [`Pipeline`].
pub struct PipelineLayer<K = AnyErrorIsTransient> {
    pipeline: Pipeline<K>,
    gate: std::sync::Arc<gate::Gate>,
}

impl<K> PipelineLayer<K> {
    /// A layer running calls through `pipeline` (shared: clones of the pipeline
    /// share its breaker, limits and budget).
    pub fn new(pipeline: Pipeline<K>) -> Self {
        PipelineLayer {
            pipeline,
            gate: Default::default(),
        }
    }
}

impl<K> Clone for PipelineLayer<K> {
    fn clone(&self) -> Self {
        PipelineLayer {
            pipeline: self.pipeline.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<K> fmt::Debug for PipelineLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PipelineLayer")
            .field(&self.pipeline)
            .finish()
    }
}

impl<S, K> Layer<S> for PipelineLayer<K> {
    type Service = PipelineService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        PipelineService {
            inner,
            pipeline: self.pipeline.clone(),
            gate: self.gate.clone(),
            sleep: None,
        }
    }
}

/// The service made by [`PipelineLayer`].
///
/// **Readiness.** `poll_ready` reports the pipeline's backpressure: while its
/// breaker is open the service is not ready, and it is woken (on tokio's clock)
/// when the open duration ends (half-open with every probe taken: when the first
/// probe's lease runs out; forced open: every [`BREAKER_RECHECK`]). While its
/// bulkhead is full and has no queue, the service is not ready, and it is woken
/// when a call through a service of the same layer ends (a slot freed by another
/// holder of the same bulkhead is seen at the next `poll_ready`); a bulkhead with
/// a queue keeps the service ready and the call waits in the queue. So tower's
/// `load_shed` sheds a call the pipeline would refuse, without calling the inner
/// service, and `balance` passes over an endpoint whose breaker is open. Nothing
/// is reserved: the pipeline takes its permits when the call runs, so a call that
/// loses a race for the last slot is refused by the pipeline as before. The inner
/// service's own readiness is awaited inside each attempt, under the attempt
/// timeout.
///
/// **Clones** share the layer's pipeline and wake-ups; a `Buffer` in front
/// (one worker, one service) sees the same readiness.
pub struct PipelineService<S, K = AnyErrorIsTransient> {
    inner: S,
    pipeline: Pipeline<K>,
    gate: std::sync::Arc<gate::Gate>,
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    sleep: Option<Pin<Box<<palisade_clock::TokioClock as palisade_clock::Clock>::Sleep>>>,
}

impl<S: Clone, K> Clone for PipelineService<S, K> {
    fn clone(&self) -> Self {
        PipelineService {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
            gate: self.gate.clone(),
            sleep: None,
        }
    }
}

impl<S, K> fmt::Debug for PipelineService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineService")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl<S, K> PipelineService<S, K> {
    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline<K> {
        &self.pipeline
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether the pipeline would take a call now; else arranges a wake-up.
    #[inline]
    fn poll_room(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        #[cfg(feature = "breaker")]
        if let Some(breaker) = self.pipeline.breaker() {
            if self.sleep.is_some() || breaker.state() != palisade_breaker::State::Closed {
                std::task::ready!(self.poll_breaker(cx));
            }
        }
        #[cfg(feature = "limit")]
        if let Some(bulkhead) = self.pipeline.bulkhead() {
            if bulkhead.try_acquire_uncounted().is_none() {
                return self.poll_bulkhead(cx);
            }
        }
        let _ = cx;
        Poll::Ready(())
    }

    #[cfg(feature = "breaker")]
    #[cold]
    #[inline(never)]
    fn poll_breaker(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        use palisade_clock::Clock as _;
        let Some(breaker) = self.pipeline.breaker() else {
            return Poll::Ready(());
        };
        for _ in 0..4 {
            if let Some(sleep) = &mut self.sleep {
                std::task::ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            // A look: a permit taken here is dropped at once, counting nothing.
            match breaker.try_acquire() {
                Ok(_) => return Poll::Ready(()),
                Err(rejected) => {
                    let wait = rejected.retry_after().unwrap_or(BREAKER_RECHECK);
                    self.sleep = Some(Box::pin(breaker.clock().sleep(wait)));
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    #[cfg(feature = "limit")]
    #[cold]
    #[inline(never)]
    fn poll_bulkhead(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        let Some(bulkhead) = self.pipeline.bulkhead() else {
            return Poll::Ready(());
        };
        let snapshot = bulkhead.snapshot();
        if snapshot.max_queue > 0 || snapshot.closed {
            // The call waits in the queue (or is refused by a closed bulkhead).
            return Poll::Ready(());
        }
        self.gate.park(cx.waker());
        if bulkhead.try_acquire_uncounted().is_some() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`PipelineService`] call: the pipeline's execution, which
    /// owns the pipeline handle and the context it borrows, on the heap (one
    /// allocation per call; the execution borrows both, so it cannot live inline in
    /// a `'static` future).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<T, E> {
        fut: Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>,
        gate: Option<std::sync::Arc<gate::Gate>>,
    }

    impl<T, E> PinnedDrop for ResponseFuture<T, E> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(gate) = this.project().gate.take() {
                gate.released();
            }
        }
    }
}

impl<T, E> fmt::Debug for ResponseFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for ResponseFuture<T, E> {
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.fut.as_mut().poll(cx));
        if let Some(gate) = this.gate.take() {
            gate.released();
        }
        Poll::Ready(out)
    }
}

impl<S, K, Req> Service<Req> for PipelineService<S, K>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    K: Classify<S::Response, S::Error> + Send + Sync + 'static,
    Req: ContextOf + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    /// Not ready while the pipeline's breaker is open or its bulkhead (without a
    /// queue) is full; see [`PipelineService`].
    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_room(cx).map(Ok)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The inner readiness is awaited in each attempt, on a clone.
        let inner = self.inner.clone();
        let pipeline = self.pipeline.clone();
        #[cfg(feature = "limit")]
        let gate = self.pipeline.bulkhead().map(|_| self.gate.clone());
        #[cfg(not(feature = "limit"))]
        let gate = None;
        let fut = Box::pin(async move {
            let ctx = request.context().cloned().unwrap_or_default();
            pipeline
                .execute(&ctx, move |ctx| {
                    let mut svc = inner.clone();
                    let mut request = request.clone();
                    request.set_context(ctx);
                    async move {
                        std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
                        svc.call(request).await
                    }
                })
                .await
        });
        ResponseFuture { fut, gate }
    }
}

/// A [`Layer`] for servers: every request through a [`Pipeline`] once, without
/// retry (an incoming request cannot be sent twice), so it needs no `Clone`.
///
/// A server must answer every request, so the layer takes a `respond` function
/// that turns the pipeline's [`Error`] into the service's own answer (with axum:
/// a rejection into a 503 with `Retry-After`, a timeout into a 504). The service
/// keeps the inner service's error type and readiness, so it drops into
/// `Router::layer` as it is. Typical server-side layers are a bulkhead or a rate
/// limiter to shed load, an attempt timeout, and a breaker in front of a fragile
/// handler.
pub struct ServerLayer<R, K = AnyErrorIsTransient> {
    pipeline: Pipeline<K>,
    respond: R,
}

impl<R, K> ServerLayer<R, K> {
    /// A layer running requests through `pipeline` (its retry, if any, is not
    /// used), answering its errors with `respond`.
    pub fn new(pipeline: Pipeline<K>, respond: R) -> Self {
        ServerLayer { pipeline, respond }
    }
}

impl<R: Clone, K> Clone for ServerLayer<R, K> {
    fn clone(&self) -> Self {
        ServerLayer {
            pipeline: self.pipeline.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<R, K> fmt::Debug for ServerLayer<R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerLayer").field(&self.pipeline).finish()
    }
}

impl<S, R: Clone, K> Layer<S> for ServerLayer<R, K> {
    type Service = ServerService<S, R, K>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            pipeline: self.pipeline.clone(),
            respond: self.respond.clone(),
        }
    }
}

/// The service made by [`ServerLayer`].
pub struct ServerService<S, R, K = AnyErrorIsTransient> {
    inner: S,
    pipeline: Pipeline<K>,
    respond: R,
}

impl<S: Clone, R: Clone, K> Clone for ServerService<S, R, K> {
    fn clone(&self) -> Self {
        ServerService {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
            respond: self.respond.clone(),
        }
    }
}

impl<S, R, K> fmt::Debug for ServerService<S, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// The future of a [`ServerService`] call.
pub type ServerFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, R, K, Req> Service<Req> for ServerService<S, R, K>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    R: Fn(Error<S::Error>) -> Result<S::Response, S::Error> + Clone + Send + 'static,
    K: Classify<S::Response, S::Error> + Send + Sync + 'static,
    Req: ContextOf,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let ctx = request.context().cloned().unwrap_or_default();
        let fut = self.inner.call(request);
        let pipeline = self.pipeline.clone();
        let respond = self.respond.clone();
        Box::pin(async move {
            match pipeline.execute_once(&ctx, fut).await {
                Ok(response) => Ok(response),
                Err(e) => respond(e),
            }
        })
    }
}

#[cfg(feature = "breaker")]
mod breaker;
mod error;
mod gate;
#[cfg(feature = "http-client")]
#[path = "http.rs"]
mod http_client;
#[cfg(feature = "limit")]
mod limit;
#[cfg(feature = "retry")]
mod retry;
mod timeout;

#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub use breaker::{BreakerFuture, BreakerLayer, BreakerService};
pub use error::{IntoLayerError, LayerError, Refused, TimedOut};
#[cfg(feature = "http-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "http-client")))]
pub use http_client::{
    DEFAULT_MAX_BUFFER, HttpClientError, HttpClientFuture, HttpClientLayer, HttpClientService,
    NotRetried, RetryBody,
};
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub use limit::{
    BulkheadFuture, BulkheadLayer, BulkheadService, RateLimiterFuture, RateLimiterLayer,
    RateLimiterService,
};
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub use retry::{RetryFuture, RetryLayer, RetryService};
pub use timeout::{AttemptTimeout, AttemptTimeoutFuture, AttemptTimeoutLayer};

/// How long a breaker that gives no hint of when it lets calls through again
/// (forced open) leaves a service not ready before it is asked again.
pub const BREAKER_RECHECK: Duration = Duration::from_secs(1);

/// A layer that limits each call of the inner service to `limit`
/// ([`AttemptTimeoutLayer`]); its timeouts are [`LayerError::TimedOut`].
pub fn attempt_timeout(limit: Duration) -> Result<AttemptTimeoutLayer, crate::ConfigError> {
    AttemptTimeoutLayer::new(limit)
}

/// A layer that retries the inner service with `policy` ([`RetryLayer`]); every
/// `Err` is transient until [`RetryLayer::classifier`] says otherwise.
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub fn retry<C: palisade_clock::Clock>(
    policy: palisade_retry::RetryPolicy<C>,
) -> RetryLayer<AnyErrorIsTransient, C> {
    RetryLayer::new(policy)
}

/// A layer that guards the inner service with `breaker` ([`BreakerLayer`]); every
/// `Err` counts as a failure until [`BreakerLayer::classifier`] says otherwise.
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub fn breaker<C: palisade_clock::Clock>(
    breaker: palisade_breaker::Breaker<C>,
) -> BreakerLayer<AnyErrorIsTransient, C> {
    BreakerLayer::new(breaker)
}

/// A layer that limits the rate of calls to the inner service
/// ([`RateLimiterLayer`]).
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn rate_limiter<C: palisade_clock::Clock>(
    limiter: palisade_limit::RateLimiter<C>,
) -> RateLimiterLayer<C> {
    RateLimiterLayer::new(limiter)
}

/// A layer that limits the rate of calls to the inner service with any
/// [`RateLimit`](palisade_limit::RateLimit): a fleet-wide limit kept on Redis
/// (`palisade::redis::RedisRateLimiter::key`), say. The limit is asked through a
/// one-strategy [`Pipeline`], so the layer is a [`PipelineLayer`] and a refusal is
/// a [`palisade::Error`](crate::Error) whose `rejected_by` is the rate limiter;
/// for the local [`RateLimiter`](palisade_limit::RateLimiter),
/// [`rate_limiter`] is cheaper.
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn rate_limit(limit: impl palisade_limit::RateLimit) -> PipelineLayer {
    let pipeline = Pipeline::builder("rate_limit").rate_limit(limit).build();
    // A pipeline of defaults and a limit has no setting that can be out of range.
    PipelineLayer::new(pipeline.expect("a pipeline with only a rate limit is valid"))
}

/// A layer that bounds the calls in flight to the inner service
/// ([`BulkheadLayer`]).
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn bulkhead<C: palisade_clock::Clock>(
    bulkhead: palisade_limit::Bulkhead<C>,
) -> BulkheadLayer<C> {
    BulkheadLayer::new(bulkhead)
}
