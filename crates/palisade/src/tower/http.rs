//! `HttpClientLayer`: a pipeline over any `http` client, retrying requests
//! whose body fits in a buffer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context as TaskContext, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use palisade_classify::{Classify, HttpStatus};
use tower_layer::Layer;
use tower_service::Service;

use crate::edge::{Outbound, OutboundError};
use crate::{Context, Error, Pipeline};

/// The bytes of a body [`HttpClientLayer`] buffers for retries, by default:
/// 64 KiB. Most API requests (JSON, forms) are far smaller; a larger body is
/// usually an upload, which is better sent once than held in memory per
/// request in flight.
pub const DEFAULT_MAX_BUFFER: usize = 64 * 1024;

struct Shared<K> {
    pipeline: Pipeline<K>,
    outbound: Outbound,
    max_buffer: usize,
    sent_once: AtomicU64,
}

/// A [`Pipeline`] over any `http` client (hyper, hyper-util's pooled client,
/// anything that is a tower `Service<http::Request<_>>`), with retries of
/// requests whose body can be buffered.
///
/// `http::Request` is not `Clone`, and a body is a stream that can be read
/// once, so [`PipelineLayer`](super::PipelineLayer) cannot retry it.
/// [`HttpClientLayer`] reads the body first, up to a limit
/// ([`DEFAULT_MAX_BUFFER`], 64 KiB, or [`HttpClientLayer::max_buffer`]), and
/// sends each attempt a copy of the request head with the buffered bytes (a
/// reference count, not a copy of the bytes). Each attempt carries the
/// headers [`Outbound`] writes from the attempt's context: its remaining
/// budget, trace context and request id.
///
/// **One attempt, never silently.** A body longer than the limit (by its
/// size hint, or found so while reading) is not buffered: the request is sent
/// once, through [`Pipeline::execute_once`] (the breaker, the limits and the
/// timeouts still apply; the retry does not), with what was already read
/// followed by the rest of the stream. Such a call is counted
/// ([`HttpClientLayer::sent_once`]) and logged (a `tracing` event at debug
/// level, target `palisade::tower`), and if it fails in a way a retry would
/// have answered, its error says why it was not retried
/// ([`HttpClientError::not_retried`], and in its `Display`). A body that
/// fails while being buffered is sent once too, ending with its error, so
/// that the client reports it as it would have. A pipeline without a retry
/// policy never buffers: the request goes to its one attempt as it is.
///
/// **Context.** The call runs under the [`Context`] in the request's
/// extensions, or else the task's
/// ([`palisade::context::current`](palisade_context::current)); a request
/// without one runs under the background context, with no deadline header.
/// Each attempt gets its attempt's context in its extensions.
///
/// **Readiness.** The service is always ready; the inner client's readiness
/// is awaited in each attempt, under the attempt timeout. Put tower's
/// `load_shed` over a [`PipelineLayer`](super::PipelineLayer) for readiness
/// that reports an open breaker.
///
/// ```
/// use axum::{Router, body::Bytes, http::StatusCode, routing::post};
/// use http_body_util::{BodyExt, Full};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use palisade::classify::HttpStatus;
/// use palisade::retry::RetryPolicy;
/// use palisade::tower::HttpClientLayer;
/// use palisade::Pipeline;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A server on loopback whose first answer is a 503.
/// let calls = Arc::new(AtomicU32::new(0));
/// let counted = calls.clone();
/// let app = Router::new().route(
///     "/echo",
///     post(move |body: Bytes| {
///         let n = counted.fetch_add(1, Ordering::SeqCst);
///         async move {
///             match n {
///                 0 => (StatusCode::SERVICE_UNAVAILABLE, Bytes::new()),
///                 _ => (StatusCode::OK, body),
///             }
///         }
///     }),
/// );
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let url = format!("http://{}/echo", listener.local_addr()?);
/// # #[allow(clippy::disallowed_methods)]
/// tokio::spawn(async move { axum::serve(listener, app).await });
///
/// let pipeline = Pipeline::builder("echo")
///     .classifier(HttpStatus::new())
///     .retry(RetryPolicy::builder().build()?)
///     .build()?;
/// let client = Client::builder(TokioExecutor::new()).build_http();
/// let service = HttpClientLayer::new(pipeline).layer(client);
/// let request = http::Request::post(&url).body(Full::new(Bytes::from_static(b"ada")))?;
/// let response = service.oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(&response.into_body().collect().await?.to_bytes()[..], b"ada");
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # Ok(())
/// # }
/// ```
pub struct HttpClientLayer<K = HttpStatus> {
    shared: Arc<Shared<K>>,
}

impl<K> HttpClientLayer<K> {
    /// A layer running requests through `pipeline`, writing
    /// `Outbound::new()`'s headers on each attempt and buffering bodies of up
    /// to [`DEFAULT_MAX_BUFFER`] bytes.
    pub fn new(pipeline: Pipeline<K>) -> Self {
        HttpClientLayer {
            shared: Arc::new(Shared {
                pipeline,
                outbound: Outbound::new(),
                max_buffer: DEFAULT_MAX_BUFFER,
                sent_once: AtomicU64::new(0),
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Shared<K>)) -> Self {
        let mut shared = match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared,
            Err(shared) => Shared {
                pipeline: shared.pipeline.clone(),
                outbound: shared.outbound.clone(),
                max_buffer: shared.max_buffer,
                sent_once: AtomicU64::new(shared.sent_once.load(Relaxed)),
            },
        };
        f(&mut shared);
        HttpClientLayer {
            shared: Arc::new(shared),
        }
    }

    /// Buffers bodies of up to `bytes` bytes for retries; a longer one is
    /// sent once. `0` buffers only empty bodies.
    pub fn max_buffer(self, bytes: usize) -> Self {
        self.with(|s| s.max_buffer = bytes)
    }

    /// Writes the headers `outbound` chooses instead.
    pub fn outbound(self, outbound: Outbound) -> Self {
        self.with(|s| s.outbound = outbound)
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline<K> {
        &self.shared.pipeline
    }

    /// The calls sent once, unretried, because their body did not fit in
    /// the buffer (or failed while being read), through this layer's
    /// services so far.
    pub fn sent_once(&self) -> u64 {
        self.shared.sent_once.load(Relaxed)
    }
}

impl<K> Clone for HttpClientLayer<K> {
    fn clone(&self) -> Self {
        HttpClientLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<K> fmt::Debug for HttpClientLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientLayer")
            .field("pipeline", &self.shared.pipeline)
            .field("max_buffer", &self.shared.max_buffer)
            .finish_non_exhaustive()
    }
}

impl<S, K> Layer<S> for HttpClientLayer<K> {
    type Service = HttpClientService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpClientService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`HttpClientLayer`]. Its inner client takes requests
/// with a [`RetryBody`].
pub struct HttpClientService<S, K = HttpStatus> {
    inner: S,
    shared: Arc<Shared<K>>,
}

impl<S: Clone, K> Clone for HttpClientService<S, K> {
    fn clone(&self) -> Self {
        HttpClientService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, K> fmt::Debug for HttpClientService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientService")
            .field("pipeline", &self.shared.pipeline)
            .field("max_buffer", &self.shared.max_buffer)
            .finish_non_exhaustive()
    }
}

/// Why a request was sent only once.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotRetried {
    /// Its body is longer than the buffer limit (this many bytes).
    BodyTooLarge {
        /// The limit, [`HttpClientLayer::max_buffer`].
        limit: usize,
    },
    /// Its body failed while being buffered; the client was given the error.
    BodyFailed,
}

impl fmt::Display for NotRetried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRetried::BodyTooLarge { limit } => write!(
                f,
                "sent once, not retried: the body is longer than the {limit}-byte retry buffer"
            ),
            NotRetried::BodyFailed => {
                f.write_str("sent once, not retried: the body failed while being buffered")
            }
        }
    }
}

/// The error of an [`HttpClientService`] call: the pipeline's [`Error`] over
/// the attempt's error (the request not sent for lack of budget, or the
/// client's own error), and whether the request could be sent only once.
#[derive(Debug)]
pub struct HttpClientError<E> {
    error: Error<OutboundError<E>>,
    not_retried: Option<NotRetried>,
}

impl<E> HttpClientError<E> {
    /// The pipeline's error.
    pub fn error(&self) -> &Error<OutboundError<E>> {
        &self.error
    }

    /// The pipeline's error, by value.
    pub fn into_error(self) -> Error<OutboundError<E>> {
        self.error
    }

    /// Why the request was sent only once, if it was, and its failure is one
    /// a retry would have answered (a transient error, a timeout).
    pub fn not_retried(&self) -> Option<NotRetried> {
        self.not_retried
    }

    /// The client's own error, if the last attempt failed with one.
    pub fn client_error(&self) -> Option<&E> {
        match self.error.inner_error() {
            Some(OutboundError::Service(e)) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for HttpClientError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)?;
        if let Some(why) = self.not_retried {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

impl<E> std::error::Error for HttpClientError<E>
where
    E: std::error::Error + 'static,
    Error<OutboundError<E>>: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The body an [`HttpClientService`] gives its inner client: the buffered
/// bytes (a copy per attempt is a reference count), or, for a request sent
/// once, what was read of the body followed by the rest of it.
pub struct RetryBody<B: Body> {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    error: Option<B::Error>,
    rest: Option<B>,
}

impl<B: Body> RetryBody<B> {
    fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        RetryBody {
            data: Some(data).filter(|d| !d.is_empty()),
            trailers,
            error: None,
            rest: None,
        }
    }

    fn whole(body: B) -> Self {
        RetryBody {
            data: None,
            trailers: None,
            error: None,
            rest: Some(body),
        }
    }
}

impl<B: Body> fmt::Debug for RetryBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBody")
            .field("buffered", &self.data.as_ref().map_or(0, Bytes::len))
            .field("streaming", &self.rest.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for RetryBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(error) = this.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if let Some(rest) = &mut this.rest {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let buffered = self.data.as_ref().map_or(0, Bytes::len) as u64;
        match &self.rest {
            None => SizeHint::with_exact(buffered),
            Some(rest) => {
                let hint = rest.size_hint();
                let mut sum = SizeHint::new();
                sum.set_lower(hint.lower() + buffered);
                if let Some(upper) = hint.upper() {
                    sum.set_upper(upper + buffered);
                }
                sum
            }
        }
    }
}

/// The body read up to the limit: all of it, or too much of it.
enum Buffered<B: Body> {
    Whole(Bytes, Option<HeaderMap>),
    Once(RetryBody<B>, NotRetried),
}

async fn buffer<B>(mut body: B, limit: usize) -> Buffered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Buffered::Once(RetryBody::whole(body), NotRetried::BodyTooLarge { limit });
    }
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut len = 0usize;
    let prefix = |first: Option<Bytes>, more: BytesMut| -> Option<Bytes> {
        match first {
            Some(first) if more.is_empty() => Some(first),
            Some(first) => {
                let mut all = BytesMut::with_capacity(first.len() + more.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&more);
                Some(all.freeze())
            }
            None => None,
        }
    };
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => {
                let data = prefix(first, more).unwrap_or_default();
                return Buffered::Whole(data, None);
            }
            Some(Err(error)) => {
                let mut once = RetryBody::whole(body);
                once.data = prefix(first, more);
                once.error = Some(error);
                once.rest = None;
                return Buffered::Once(once, NotRetried::BodyFailed);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    len = len.saturating_add(data.len());
                    match &first {
                        None => first = Some(data),
                        Some(_) => more.extend_from_slice(&data),
                    }
                    if len > limit {
                        let mut once = RetryBody::whole(body);
                        once.data = prefix(first, more);
                        return Buffered::Once(once, NotRetried::BodyTooLarge { limit });
                    }
                }
                Err(frame) => {
                    // Trailers end the body.
                    let trailers = frame.into_trailers().ok();
                    let data = prefix(first, more).unwrap_or_default();
                    return Buffered::Whole(data, trailers);
                }
            },
        }
    }
}

/// The future of an [`HttpClientService`] call: the pipeline's execution on
/// the heap (it borrows the pipeline and the context it owns).
#[must_use = "futures do nothing unless polled"]
pub struct HttpClientFuture<T, E> {
    fut: Pin<Box<dyn Future<Output = Result<T, HttpClientError<E>>> + Send>>,
}

impl<T, E> fmt::Debug for HttpClientFuture<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientFuture").finish_non_exhaustive()
    }
}

impl<T, E> Future for HttpClientFuture<T, E> {
    type Output = Result<T, HttpClientError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// Whether the pipeline may make more than one attempt.
fn retries<K>(pipeline: &Pipeline<K>) -> bool {
    #[cfg(feature = "retry")]
    return pipeline.retry_policy().is_some();
    #[cfg(not(feature = "retry"))]
    {
        let _ = pipeline;
        false
    }
}

async fn attempt<S, B>(
    mut svc: S,
    request: Result<Request<RetryBody<B>>, crate::edge::BudgetExhausted>,
) -> Result<S::Response, OutboundError<S::Error>>
where
    S: Service<Request<RetryBody<B>>>,
    B: Body,
{
    let request = request.map_err(OutboundError::Budget)?;
    std::future::poll_fn(|cx| svc.poll_ready(cx))
        .await
        .map_err(OutboundError::Service)?;
    svc.call(request).await.map_err(OutboundError::Service)
}

impl<S, K, B> Service<Request<B>> for HttpClientService<S, K>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Unpin + Send,
    S: Service<Request<RetryBody<B>>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    K: Classify<S::Response, OutboundError<S::Error>> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = HttpClientError<S::Error>;
    type Future = HttpClientFuture<S::Response, S::Error>;

    /// Always ready: the inner client's readiness is awaited in each attempt.
    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let shared = self.shared.clone();
        let fut = Box::pin(async move {
            let shared = &*shared;
            let ctx = match request.extensions().get::<Context>() {
                Some(ctx) => ctx.clone(),
                None => palisade_context::current(),
            };
            let pipeline = &shared.pipeline;
            let (parts, body) = request.into_parts();
            if !retries(pipeline) {
                // One attempt at most: the request goes to it as it is.
                let mut slot = Some((parts, body));
                let result = pipeline
                    .execute(&ctx, move |attempt_ctx| {
                        let request = slot.take().map(|(parts, body)| {
                            let mut request = Request::from_parts(parts, RetryBody::whole(body));
                            shared
                                .outbound
                                .inject(&attempt_ctx, request.headers_mut())
                                .map(|()| {
                                    request.extensions_mut().insert(attempt_ctx);
                                    request
                                })
                        });
                        let svc = inner.clone();
                        async move {
                            match request {
                                Some(request) => attempt(svc, request).await,
                                None => unreachable!("a pipeline without a retry policy retried"),
                            }
                        }
                    })
                    .await;
                return result.map_err(|error| HttpClientError {
                    error,
                    not_retried: None,
                });
            }
            match buffer(body, shared.max_buffer).await {
                Buffered::Whole(data, trailers) => pipeline
                    .execute(&ctx, move |attempt_ctx| {
                        let body = RetryBody::buffered(data.clone(), trailers.clone());
                        let mut request = Request::from_parts(parts.clone(), body);
                        let request = shared
                            .outbound
                            .inject(&attempt_ctx, request.headers_mut())
                            .map(|()| {
                                request.extensions_mut().insert(attempt_ctx);
                                request
                            });
                        attempt(inner.clone(), request)
                    })
                    .await
                    .map_err(|error| HttpClientError {
                        error,
                        not_retried: None,
                    }),
                Buffered::Once(body, why) => {
                    shared.sent_once.fetch_add(1, Relaxed);
                    tracing::debug!(
                        target: "palisade::tower",
                        dependency = pipeline.name(),
                        method = %parts.method,
                        uri = %parts.uri,
                        "{why}"
                    );
                    let mut request = Request::from_parts(parts, body);
                    let request = shared
                        .outbound
                        .inject(&ctx, request.headers_mut())
                        .map(|()| request);
                    pipeline
                        .execute_once(&ctx, attempt(inner, request))
                        .await
                        .map_err(|error| {
                            let retryable = error.outcome().is_retryable() || error.is_timeout();
                            HttpClientError {
                                error,
                                not_retried: retryable.then_some(why),
                            }
                        })
                }
            }
        });
        HttpClientFuture { fut }
    }
}
