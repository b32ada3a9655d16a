//! gRPC with tonic: statuses classified by the gRPC retry design's rules,
//! palisade's rejections answered as gRPC statuses, and the layers of a client
//! and a server.
//!
//! - [`GrpcClassifier`] classifies `Result<tonic::Response<T>, tonic::Status>`
//!   (what a generated client returns) by status code (the table there), and
//!   reads the server's `grpc-retry-pushback-ms` ([`parse_pushback`]). It also
//!   classifies `http::Response`s by their `grpc-status` header, for the
//!   layers.
//! - [`request`] makes a `tonic::Request` under the attempt's context: its
//!   `grpc-timeout` is the attempt's remaining budget, and it carries the trace
//!   context and the request id. With it, a call of a generated client retries
//!   through [`Pipeline::execute`](crate::Pipeline::execute), and
//!   [`into_status`] turns the pipeline's error back into a `Status`.
//! - [`status_of`] maps the pipeline's own errors to statuses: an open breaker
//!   is `UNAVAILABLE`, a full bulkhead or an empty rate limiter
//!   `RESOURCE_EXHAUSTED` with pushback metadata, a timeout
//!   `DEADLINE_EXCEEDED`.
//! - [`ClientLayer`] puts a pipeline around a tonic `Channel` (or any client
//!   service of `http::Request`s): every call goes through the breaker, the
//!   limits and the timeouts, and leaves with `grpc-timeout` and trace metadata.
//!   A call through it is sent once (a gRPC request body is a stream): retry
//!   with [`request`] and `execute` above it.
//! - [`server_layer`] is the server's: a [`ServerLayer`]
//!   whose rejections and timeouts answer with the statuses of
//!   [`status_of`]. Put [`Inbound::grpc`](crate::edge::Inbound::grpc) outside it
//!   for the deadline of each call from its `grpc-timeout` (enforced, and a
//!   panic answered `INTERNAL`).
//!
//! ```no_run
//! use palisade::Pipeline;
//! use palisade::edge::Inbound;
//! use palisade::limit::{Bulkhead, BulkheadConfig};
//! use tower::ServiceBuilder;
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let shed = Pipeline::builder("grpc-server")
//!     .bulkhead(Bulkhead::new(BulkheadConfig::new(64))?)
//!     .build()?;
//! let layers = ServiceBuilder::new()
//!     .layer(Inbound::new().grpc().layer())
//!     .layer(palisade::tonic::server_layer(shed));
//! let server = tonic::transport::Server::builder().layer(layers);
//! # let _ = server;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::HeaderMap;
use palisade_classify::{
    Classify, DEFAULT_MAX_RETRY_AFTER, Delivery, Outcome, Strategy, Transient,
};
use palisade_clock::{Clock, TokioClock};
use palisade_context::Abandoned;
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use crate::edge::{DeadlineHeader, Outbound};
use crate::tower::{ContextOf, ServerLayer};
use crate::{BoxError, Context, Error, Pipeline};

/// The metadata key of the gRPC retry design's server pushback: the
/// milliseconds the client should wait before retrying.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// The pushback a rejection answers with when it carries no hint of its own:
/// one second, as [`axum::DEFAULT_RETRY_AFTER`](crate::axum) would say it.
pub const DEFAULT_PUSHBACK: Duration = Duration::from_secs(1);

/// What a server's `grpc-retry-pushback-ms` asks of the client.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushback {
    /// Retry, after this long.
    After(Duration),
    /// Do not retry: the value was negative or not a number, which the gRPC
    /// retry design reads as the server asking for no retry at all.
    DoNotRetry,
}

/// Parses a `grpc-retry-pushback-ms` value: whole milliseconds, at most
/// `max` (a larger value is clamped to it). A negative or unreadable value is
/// [`Pushback::DoNotRetry`], as the gRPC retry design (A6) says. Never
/// panics.
///
/// ```
/// use palisade::tonic::{Pushback, parse_pushback};
/// use std::time::Duration;
///
/// let max = Duration::from_secs(60);
/// assert_eq!(parse_pushback(b"250", max), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(parse_pushback(b"99999999999999999999", max), Pushback::After(max));
/// assert_eq!(parse_pushback(b"-1", max), Pushback::DoNotRetry);
/// assert_eq!(parse_pushback(b"soon", max), Pushback::DoNotRetry);
/// ```
pub fn parse_pushback(value: &[u8], max: Duration) -> Pushback {
    let text = match std::str::from_utf8(value) {
        Ok(text) => text.trim(),
        Err(_) => return Pushback::DoNotRetry,
    };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Pushback::DoNotRetry;
    }
    // Too many digits for a u64 still means "a long time": clamp.
    let millis = text.parse::<u64>().unwrap_or(u64::MAX);
    Pushback::After(Duration::from_millis(millis).min(max))
}

/// Classifies gRPC statuses, following the gRPC retry design (A6) and the
/// status codes' own definitions:
///
/// | code | outcome | why |
/// | --- | --- | --- |
/// | `OK` | success | |
/// | `UNAVAILABLE` | transient, may have been delivered | the code for "try again" |
/// | `RESOURCE_EXHAUSTED` | transient, not delivered | the server refused it unprocessed (HTTP's 429) |
/// | `DEADLINE_EXCEEDED` | transient, may have been delivered | the server may still be working on it |
/// | `ABORTED` | transient, may have been delivered | a conflict that a retry can get past |
/// | `CANCELLED` | ignored | the caller gave up |
/// | `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE` | ignored | the caller's business, not the server's health |
/// | `UNKNOWN`, `INTERNAL`, `UNIMPLEMENTED`, `DATA_LOSS` | permanent | asking again gets the same |
///
/// A transient status with a valid `grpc-retry-pushback-ms` carries it as
/// the retry-after hint, clamped to [`max_pushback`](Self::max_pushback)
/// (default [`DEFAULT_MAX_RETRY_AFTER`]); one with a negative or unreadable
/// pushback is permanent: the server asked for no retry (see
/// [`parse_pushback`]).
#[derive(Copy, Clone, Debug)]
pub struct GrpcClassifier {
    max_pushback: Duration,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        GrpcClassifier::new()
    }
}

impl GrpcClassifier {
    /// The classifier of the table above.
    pub const fn new() -> Self {
        GrpcClassifier {
            max_pushback: DEFAULT_MAX_RETRY_AFTER,
        }
    }

    /// Clamps pushback hints to `max`.
    pub const fn max_pushback(mut self, max: Duration) -> Self {
        self.max_pushback = max;
        self
    }

    /// The outcome of a status code, without pushback.
    pub const fn classify_code(code: Code) -> Outcome {
        match code {
            Code::Ok => Outcome::Success,
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => Outcome::transient(),
            Code::ResourceExhausted => {
                Outcome::Transient(Transient::new().with_delivery(Delivery::NotDelivered))
            }
            Code::Cancelled
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange => Outcome::Ignored,
            Code::Unknown | Code::Internal | Code::Unimplemented | Code::DataLoss => {
                Outcome::Permanent
            }
        }
    }

    /// The outcome of a status with its metadata (the pushback).
    pub fn classify_status(&self, status: &Status) -> Outcome {
        self.with_pushback(
            Self::classify_code(status.code()),
            status
                .metadata()
                .get(GRPC_RETRY_PUSHBACK_MS)
                .map(|v| v.as_bytes()),
        )
    }

    /// The outcome of a response's headers: its `grpc-status` (the status of
    /// a trailers-only answer, which is how servers answer errors), else its
    /// HTTP status as gRPC maps it (200 without `grpc-status`: the status
    /// comes in the trailers, and the call is a success as far as its headers
    /// tell).
    pub fn classify_headers(&self, http_status: http::StatusCode, headers: &HeaderMap) -> Outcome {
        let code = match headers.get("grpc-status") {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(Code::Unknown, Code::from_i32),
            None => http_to_code(http_status),
        };
        self.with_pushback(
            Self::classify_code(code),
            headers.get(GRPC_RETRY_PUSHBACK_MS).map(|v| v.as_bytes()),
        )
    }

    fn with_pushback(&self, outcome: Outcome, pushback: Option<&[u8]>) -> Outcome {
        match (outcome, pushback) {
            (Outcome::Transient(t), Some(value)) => {
                match parse_pushback(value, self.max_pushback) {
                    Pushback::After(delay) => Outcome::Transient(t.with_retry_after(delay)),
                    Pushback::DoNotRetry => Outcome::Permanent,
                }
            }
            (outcome, _) => outcome,
        }
    }
}

/// The gRPC code of an HTTP status without `grpc-status` (gRPC's
/// "HTTP to gRPC status code mapping").
fn http_to_code(status: http::StatusCode) -> Code {
    match status.as_u16() {
        200 => Code::Ok,
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

impl<T> Classify<tonic::Response<T>, Status> for GrpcClassifier {
    fn classify(&self, result: &Result<tonic::Response<T>, Status>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(status) => self.classify_status(status),
        }
    }
}

/// For the layers: a response by its headers; an error that is a `Status`
/// (or holds one in its source chain) by that status; any other error
/// (the connection failed) transient.
impl<B> Classify<http::Response<B>, BoxError> for GrpcClassifier {
    fn classify(&self, result: &Result<http::Response<B>, BoxError>) -> Outcome {
        match result {
            Ok(response) => self.classify_headers(response.status(), response.headers()),
            Err(e) => match find_status(&**e) {
                Some(status) => self.classify_status(status),
                None => Outcome::transient(),
            },
        }
    }
}

/// For a server: a response by its headers (the handler's error status).
impl<B> Classify<http::Response<B>, std::convert::Infallible> for GrpcClassifier {
    fn classify(&self, result: &Result<http::Response<B>, std::convert::Infallible>) -> Outcome {
        match result {
            Ok(response) => self.classify_headers(response.status(), response.headers()),
            Err(never) => match *never {},
        }
    }
}

fn find_status<'a>(
    error: &'a (dyn std::error::Error + Send + Sync + 'static),
) -> Option<&'a Status> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(status) = e.downcast_ref::<Status>() {
            return Some(status);
        }
        source = e.source();
    }
    None
}

/// The status a pipeline's own error answers with:
///
/// | error | code | metadata |
/// | --- | --- | --- |
/// | rejected by the circuit breaker | `UNAVAILABLE` | `grpc-retry-pushback-ms` |
/// | rejected by the bulkhead, the rate limiter, an adaptive limit, throttling or the retry budget | `RESOURCE_EXHAUSTED` | `grpc-retry-pushback-ms` |
/// | rejected by the deadline, a timeout, a context ended by its deadline | `DEADLINE_EXCEEDED` | |
/// | cancelled | `CANCELLED` | |
/// | a panic | `INTERNAL` | |
/// | an injected fault | `UNAVAILABLE` | |
/// | the inner error, retries exhausted, a failed fallback | `UNKNOWN` (see [`into_status`] for an inner `Status`) | |
///
/// The pushback is the rejection's hint of when to try again, or
/// [`DEFAULT_PUSHBACK`]. The message is the error's kind
/// ([`Error::kind_str`]) and the strategy, never the inner error's text.
pub fn status_of<E>(error: &Error<E>) -> Status {
    if let Some(rejection) = error.rejection() {
        let code = match rejection.strategy() {
            Strategy::CircuitBreaker => Code::Unavailable,
            Strategy::Deadline => Code::DeadlineExceeded,
            _ => Code::ResourceExhausted,
        };
        let mut status = Status::new(code, rejection.to_string());
        if code != Code::DeadlineExceeded {
            let pushback = rejection.retry_after().unwrap_or(DEFAULT_PUSHBACK);
            let millis = u64::try_from(pushback.as_millis()).unwrap_or(u64::MAX);
            status
                .metadata_mut()
                .insert(GRPC_RETRY_PUSHBACK_MS, millis.into());
        }
        return status;
    }
    let code = if error.is_timeout()
        || error
            .cancel_cause()
            .is_some_and(|c| c.is_deadline_exceeded())
    {
        Code::DeadlineExceeded
    } else if error.is_cancelled() {
        Code::Cancelled
    } else if error.is_panic() {
        Code::Internal
    } else if error.is_injected() {
        Code::Unavailable
    } else {
        Code::Unknown
    };
    Status::new(code, error.kind_str())
}

/// The pipeline's error of a generated client's call as the `Status` the call
/// would return: the inner `Status` as it is (the last one, when retries ran
/// out, with the attempts counted in its message), the pipeline's own errors
/// by [`status_of`].
pub fn into_status(error: Error<Status>) -> Status {
    if error.is_retries_exhausted() {
        let attempts = error.attempts().unwrap_or(0);
        if let Some(last) = error.last_error().and_then(Error::inner_error) {
            let message = format!("{} (after {attempts} attempts)", last.message());
            return Status::with_metadata(last.code(), message, last.metadata().clone());
        }
    }
    match error.into_inner() {
        Ok(status) => status,
        Err(error) => status_of(&error),
    }
}

/// A `tonic::Request` of `message` under the attempt's context `ctx`: its
/// `grpc-timeout` is the time `ctx` has left less `Outbound`'s margin, and it
/// carries the trace context (`traceparent`) and the request id
/// (`x-request-id`). Fails with `DEADLINE_EXCEEDED` when the context has
/// ended or too little of it is left (the request is not worth sending).
///
/// A generated client's call, retried with each attempt's metadata (the
/// complete program, against a real server, is `crates/grpc-echo/tests/guide.rs`):
///
/// ```
/// use palisade::tonic::{GrpcClassifier, into_status, request};
/// use palisade::{Context, Pipeline};
///
/// # #[derive(Clone)]
/// # struct EchoClient;
/// # impl EchoClient {
/// #     async fn say(&mut self, r: tonic::Request<String>) -> Result<tonic::Response<String>, tonic::Status> {
/// #         assert!(r.metadata().get("grpc-timeout").is_some());
/// #         Ok(tonic::Response::new(r.into_inner()))
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tonic::Status> {
/// # let client = EchoClient;
/// # #[allow(clippy::disallowed_methods)]
/// # let (ctx, _guard) = Context::background().with_timeout(std::time::Duration::from_secs(1));
/// let pipeline = Pipeline::builder("echo").classifier(GrpcClassifier::new()).build().unwrap();
/// let reply = pipeline
///     .execute(&ctx, |attempt| {
///         let mut client = client.clone(); // a generated client: a cheap handle
///         let request = request(&attempt, "hello".to_owned());
///         async move { client.say(request?).await }
///     })
///     .await
///     .map_err(into_status)?;
/// assert_eq!(reply.into_inner(), "hello");
/// # Ok(())
/// # }
/// ```
pub fn request<T>(ctx: &Context, message: T) -> Result<tonic::Request<T>, Status> {
    let mut headers = HeaderMap::new();
    grpc_outbound()
        .inject(ctx, &mut headers)
        .map_err(|budget| Status::deadline_exceeded(budget.to_string()))?;
    let mut request = tonic::Request::new(message);
    *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    request.extensions_mut().insert(ctx.clone());
    Ok(request)
}

/// The context of a `tonic::Request` is the one in its extensions
/// ([`request`] puts the attempt's there; on a server,
/// [`Inbound`](crate::edge::Inbound) puts the call's in the `http::Request`,
/// and tonic carries the extensions over).
impl<T> ContextOf for tonic::Request<T> {
    fn context(&self) -> Option<&Context> {
        self.extensions().get::<Context>()
    }

    fn set_context(&mut self, ctx: Context) {
        self.extensions_mut().insert(ctx);
    }
}

fn grpc_outbound() -> Outbound {
    Outbound::new().deadline_header(Some(DeadlineHeader::GrpcTimeout))
}

/// The server's layer: every call through `pipeline` once (its retry, if
/// any, is not used), its errors answered with [`status_of`]'s statuses as
/// trailers-only gRPC responses. Use a pipeline with [`GrpcClassifier`]
/// (`.classifier(GrpcClassifier::new())`) so that a breaker counts the
/// handlers' error statuses; the default counts every answer as a success.
pub fn server_layer<K>(pipeline: Pipeline<K>) -> ServerLayer<Respond, K> {
    ServerLayer::new(pipeline, respond as Respond)
}

/// The answer function of [`server_layer`].
pub type Respond = fn(
    Error<std::convert::Infallible>,
) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible>;

/// The pipeline's error as a trailers-only gRPC response (for a
/// [`ServerLayer`] over a tonic server, whose error is `Infallible`).
pub fn respond<E>(error: Error<E>) -> Result<http::Response<tonic::body::Body>, E> {
    Ok(status_of(&error).into_http())
}

/// A [`Layer`] that runs every call of a gRPC client service (a tonic
/// `Channel`) through a [`Pipeline`], once, with `grpc-timeout`, trace and
/// request id metadata written from the call's context.
///
/// - The context is the one in the request's extensions ([`request`] puts
///   it there), or else the task's. The `grpc-timeout` written is what the
///   attempt has left: the context's, capped by the pipeline's attempt and
///   total timeouts.
/// - A refusal (an open breaker, a full bulkhead) fails the call without
///   sending it, with the `Status` of [`status_of`] as the error: the
///   generated client returns that status. A call whose budget is spent fails
///   with `DEADLINE_EXCEEDED`.
/// - The call is sent once: a gRPC request body is a stream that cannot be
///   sent twice. Retry above the client, with [`request`] and
///   [`Pipeline::execute`].
///
/// Its pipeline's classifier reads the answer's headers ([`GrpcClassifier`]'s
/// impl for `http::Response`): a trailers-only error status counts against
/// the breaker.
pub struct ClientLayer<K = GrpcClassifier> {
    pipeline: Pipeline<K>,
    outbound: Outbound,
}

impl<K> ClientLayer<K> {
    /// A layer running calls through `pipeline`.
    pub fn new(pipeline: Pipeline<K>) -> Self {
        ClientLayer {
            pipeline,
            outbound: grpc_outbound(),
        }
    }
}

impl<K> Clone for ClientLayer<K> {
    fn clone(&self) -> Self {
        ClientLayer {
            pipeline: self.pipeline.clone(),
            outbound: self.outbound.clone(),
        }
    }
}

impl<K> fmt::Debug for ClientLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientLayer").field(&self.pipeline).finish()
    }
}

impl<S, K> Layer<S> for ClientLayer<K> {
    type Service = ClientService<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService {
            inner,
            pipeline: self.pipeline.clone(),
            outbound: self.outbound.clone(),
        }
    }
}

/// The service made by [`ClientLayer`].
pub struct ClientService<S, K = GrpcClassifier> {
    inner: S,
    pipeline: Pipeline<K>,
    outbound: Outbound,
}

impl<S: Clone, K> Clone for ClientService<S, K> {
    fn clone(&self) -> Self {
        ClientService {
            inner: self.inner.clone(),
            pipeline: self.pipeline.clone(),
            outbound: self.outbound.clone(),
        }
    }
}

impl<S, K> fmt::Debug for ClientService<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientService")
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

/// The future of a [`ClientService`] call.
pub type ClientFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<S, K, B, RB> Service<http::Request<B>> for ClientService<S, K>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Send + 'static,
    B: Send + 'static,
    K: Classify<http::Response<RB>, BoxError> + Send + Sync + 'static,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = ClientFuture<http::Response<RB>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let ctx = match ContextOf::context(&request) {
            Some(ctx) => ctx.clone(),
            None => palisade_context::current(),
        };
        // The deadline the attempt will have: the context's, capped by the
        // pipeline's timeouts.
        let limit = match (
            self.pipeline.attempt_timeout(),
            self.pipeline.total_timeout(),
        ) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        };
        let attempt_ctx = match limit {
            Some(limit) => ctx.capped(
                TokioClock.now().saturating_add(limit),
                Abandoned::AttemptTimeout,
            ),
            None => ctx.clone(),
        };
        let injected = self.outbound.inject(&attempt_ctx, request.headers_mut());
        request.extensions_mut().insert(attempt_ctx);
        // Take the service that was driven to readiness; leave a clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pipeline = self.pipeline.clone();
        Box::pin(async move {
            if let Err(budget) = injected {
                return Err(Box::new(Status::deadline_exceeded(budget.to_string())) as BoxError);
            }
            // Called only once admitted: a channel sends the request as soon
            // as it is called.
            let call = async move { inner.call(request).await.map_err(Into::into) };
            let result = pipeline.execute_once(&ctx, call).await;
            match result {
                Ok(response) => Ok(response),
                Err(e) => match e.into_inner() {
                    Ok(inner) => Err(inner),
                    Err(e) => Err(Box::new(status_of(&e)) as BoxError),
                },
            }
        })
    }
}
