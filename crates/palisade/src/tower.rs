//! Tower middleware: a whole [`Pipeline`] as one [`Layer`], and each strategy on
//! its own.
//!
//! [`PipelineLayer`] wraps any `Service` whose requests can be cloned (a retry
//! sends the request again) in a pipeline: every call runs through
//! [`Pipeline::execute`], each attempt on a clone of the inner service (tower's
//! usual pattern: services are cheap handles). The error is the pipeline's
//! [`Error`] over the service's error. The context of a call is the one in the
//! request's extensions ([`ContextOf`], for `http::Request` with the `http`
//! feature), or the background context.
//!
//! [`ServerLayer`] is the same for requests that cannot be cloned (an incoming
//! request on a server): one attempt, no retry.
//!
//! The single-strategy layers ([`attempt_timeout`], [`retry`], [`breaker`],
//! [`rate_limiter`], [`bulkhead`]) are pipelines with that one strategy, so they
//! speak the same error and can be stacked; a whole pipeline in one layer keeps the
//! order right by construction.
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
//! The returned futures are boxed (one allocation per call): a tower `Service`
//! must name its future type.

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
/// The default reads none: the call runs under the background context. For
/// `http::Request` (with the `http` feature) it is the `Context` in the request's
/// extensions, if a server layer put one there.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `palisade::tower::ContextOf`, which palisade's tower layers need of a request type",
    label = "a request of this type cannot go through a `PipelineLayer` or `ServerLayer`",
    note = "implement `palisade::tower::ContextOf` for `{Self}` (an empty `impl ContextOf for {Self} {{}}` runs every call under the background context), or send it as an `http::Request` (the `http` feature)",
    note = "a `PipelineLayer` also needs the request to be `Clone` (a retry sends it again); a request that cannot be cloned goes through `ServerLayer` (one attempt), or `palisade::reqwest::send` for reqwest"
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
}

impl<K> PipelineLayer<K> {
    /// A layer running calls through `pipeline` (shared: clones of the pipeline
    /// share its breaker, limits and budget).
    pub fn new(pipeline: Pipeline<K>) -> Self {
        PipelineLayer { pipeline }
    }
}

impl<K> Clone for PipelineLayer<K> {
    fn clone(&self) -> Self {
        PipelineLayer {
            pipeline: self.pipeline.clone(),
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
        }
    }
}

/// The service made by [`PipelineLayer`].
pub struct PipelineService<S, K = AnyErrorIsTransient> {
    inner: S,
    pipeline: Pipeline<K>,
}

impl<S: Clone, K> Clone for PipelineService<S, K> {
    fn clone(&self) -> Self {
        PipelineService {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
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
}

/// The future of a [`PipelineService`] call.
pub type ResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, Error<E>>> + Send>>;

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

    /// Always ready: readiness of the inner service is awaited inside each attempt,
    /// under the attempt timeout, and the pipeline's own limits reject rather than
    /// queue without bound.
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // Take the service that was driven to readiness; leave a clone behind.
        let inner = self.inner.clone();
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
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
        })
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

fn single(name: &'static str) -> crate::PipelineBuilder {
    Pipeline::builder(name)
}

/// A layer that limits each call of the inner service to `limit`.
pub fn attempt_timeout(limit: Duration) -> Result<PipelineLayer, crate::ConfigError> {
    Ok(PipelineLayer::new(
        single("attempt_timeout").attempt_timeout(limit).build()?,
    ))
}

/// A layer that retries the inner service with `policy`.
#[cfg(feature = "retry")]
#[cfg_attr(docsrs, doc(cfg(feature = "retry")))]
pub fn retry(policy: palisade_retry::RetryPolicy) -> PipelineLayer {
    PipelineLayer::new(single("retry").retry(policy).build_unchecked())
}

/// A layer that guards the inner service with `breaker`.
#[cfg(feature = "breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "breaker")))]
pub fn breaker(breaker: palisade_breaker::Breaker) -> PipelineLayer {
    PipelineLayer::new(single("breaker").breaker(breaker).build_unchecked())
}

/// A layer that limits the rate of calls to the inner service.
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn rate_limiter(limiter: palisade_limit::RateLimiter) -> PipelineLayer {
    PipelineLayer::new(
        single("rate_limiter")
            .rate_limiter(limiter)
            .build_unchecked(),
    )
}

/// A layer that limits the rate of calls to the inner service with any
/// [`RateLimit`](palisade_limit::RateLimit): a fleet-wide limit kept on Redis
/// (`palisade::redis::RedisRateLimiter::key`), say.
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn rate_limit(limit: impl palisade_limit::RateLimit) -> PipelineLayer {
    PipelineLayer::new(single("rate_limit").rate_limit(limit).build_unchecked())
}

/// A layer that bounds the calls in flight to the inner service.
#[cfg(feature = "limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "limit")))]
pub fn bulkhead(bulkhead: palisade_limit::Bulkhead) -> PipelineLayer {
    PipelineLayer::new(single("bulkhead").bulkhead(bulkhead).build_unchecked())
}
