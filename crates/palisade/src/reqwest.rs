//! reqwest through a [`Pipeline`]: a classifier for its responses and errors,
//! requests sent with retries, and the attempt's deadline, trace context and
//! request id written on every attempt.
//!
//! - [`ReqwestClassifier`] classifies `reqwest::Response` by status (a 503 is
//!   transient, a 404 the caller's business) and reads `Retry-After` on 429
//!   and 503; it classifies `reqwest::Error` by what failed (see its table).
//! - [`send`] (or [`RequestBuilderExt::send_with`]) runs a `RequestBuilder`
//!   through a pipeline: each attempt sends a clone of the request
//!   (`Request::try_clone`), with the headers [`Outbound`] writes from the
//!   attempt's context. A request whose body cannot be cloned (a stream) gets
//!   **one attempt** and no retry: it is sent through
//!   [`Pipeline::execute_once`], and [`is_one_shot`] tells it apart beforehand.
//! - With the `reqwest-middleware` feature, [`PipelineMiddleware`] does the
//!   same inside a `reqwest_middleware::ClientWithMiddleware`.
//!
//! A request whose method is not idempotent (`POST`, `PATCH`) is retried
//! only after a failure that certainly did not reach the server (a refused
//! connection, a 429): a reset mid-request or a timeout may have done the work
//! already, so it is permanent for such a request. A response says nothing of
//! the method: a `POST` answered 503 is retried like a `GET`, as the server
//! said it did not serve it. The retry policy's own
//! [`idempotency`](crate::retry::RetryPolicyBuilder::idempotency) still
//! applies on top.
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::get};
//! use palisade::reqwest::{ReqwestClassifier, RequestBuilderExt};
//! use palisade::retry::RetryPolicy;
//! use palisade::{Context, Pipeline};
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on loopback whose first answer is a 503.
//! let calls = Arc::new(AtomicU32::new(0));
//! let counted = calls.clone();
//! let app = Router::new().route(
//!     "/users/7",
//!     get(move || {
//!         let n = counted.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             match n {
//!                 0 => (StatusCode::SERVICE_UNAVAILABLE, "warming up"),
//!                 _ => (StatusCode::OK, "ada"),
//!             }
//!         }
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}/users/7", listener.local_addr()?);
//! # #[allow(clippy::disallowed_methods)]
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // One pipeline per dependency: a 503 is transient and retried.
//! let users = Pipeline::builder("users-api")
//!     .classifier(ReqwestClassifier::new())
//!     .retry(RetryPolicy::builder().build()?)
//!     .attempt_timeout(Duration::from_millis(500))
//!     .build()?;
//! let client = reqwest::Client::new();
//! # #[allow(clippy::disallowed_methods)]
//! let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(5));
//! // Each attempt carries `x-request-timeout-ms`: what is left of the 5 s.
//! let response = client.get(&url).send_with(&users, &ctx).await?;
//! assert_eq!(response.text().await?, "ada");
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use palisade_classify::{
    Classify, Delivery, HttpResponse, HttpStatus, Idempotency, Outcome, Rejection, Strategy,
    Transient,
};
use palisade_clock::Clock;

use crate::edge::{BudgetExhausted, Outbound};
use crate::{Context, Error, Pipeline};

/// The error of one attempt of [`send`]: the request was not sent (its
/// budget was spent), or reqwest failed.
///
/// It remembers whether the request's method is idempotent (RFC 9110: `GET`,
/// `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`), so that
/// [`ReqwestClassifier`] does not retry a `POST` that may have reached the
/// server.
#[derive(Debug)]
pub struct SendError {
    kind: SendErrorKind,
}

#[derive(Debug)]
enum SendErrorKind {
    NotSent(BudgetExhausted),
    Reqwest {
        error: reqwest::Error,
        idempotent: bool,
    },
}

impl SendError {
    fn reqwest(error: reqwest::Error, idempotent: bool) -> Self {
        SendError {
            kind: SendErrorKind::Reqwest { error, idempotent },
        }
    }

    fn not_sent(budget: BudgetExhausted) -> Self {
        SendError {
            kind: SendErrorKind::NotSent(budget),
        }
    }

    /// reqwest's error, if reqwest failed.
    pub fn reqwest_error(&self) -> Option<&reqwest::Error> {
        match &self.kind {
            SendErrorKind::Reqwest { error, .. } => Some(error),
            SendErrorKind::NotSent(_) => None,
        }
    }

    /// reqwest's error, or the error itself if the request was not sent.
    pub fn into_reqwest_error(self) -> Result<reqwest::Error, Self> {
        match self.kind {
            SendErrorKind::Reqwest { error, .. } => Ok(error),
            kind => Err(SendError { kind }),
        }
    }

    /// Why the request was not sent, if it was not: its context had ended,
    /// or too little of its budget was left.
    pub fn not_sent_because(&self) -> Option<&BudgetExhausted> {
        match &self.kind {
            SendErrorKind::NotSent(budget) => Some(budget),
            SendErrorKind::Reqwest { .. } => None,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            SendErrorKind::NotSent(budget) => budget.fmt(f),
            SendErrorKind::Reqwest { error, .. } => error.fmt(f),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            SendErrorKind::NotSent(budget) => Some(budget),
            SendErrorKind::Reqwest { error, .. } => Some(error),
        }
    }
}

/// Whether `method` may be repeated (RFC 9110 §9.2.2).
fn idempotent(method: &reqwest::Method) -> bool {
    matches!(
        Idempotency::of_http_method(method.as_str()),
        Idempotency::Idempotent
    )
}

/// A transient failure that may have reached the server, of a request that
/// must not be repeated, is not retried: it becomes permanent (still counted
/// by a breaker).
fn for_method(outcome: Outcome, idempotent: bool) -> Outcome {
    match outcome {
        Outcome::Transient(t) if !idempotent && t.delivery() == Delivery::MaybeDelivered => {
            Outcome::Permanent
        }
        outcome => outcome,
    }
}

/// Classifies reqwest's responses and errors.
///
/// A response is classified by its status, as
/// [`HttpStatus`] does (`Retry-After` read on 429
/// and 503, clamped to [`max_retry_after`](Self::max_retry_after), a malformed
/// one giving no hint). An error by what failed:
///
/// | `reqwest::Error` | outcome | why |
/// | --- | --- | --- |
/// | `is_connect()` | transient, not delivered | no connection, so the server never saw the request |
/// | `is_timeout()` | transient, may have been delivered | the server may be working on it |
/// | `is_request()`, `is_body()` (a reset, a body cut short) | transient, may have been delivered | |
/// | `is_status()` (from `error_for_status`) | by the status | |
/// | `is_decode()` | permanent | the server answered something that cannot be read; asking again gets the same |
/// | `is_redirect()` | permanent | a redirect loop or policy refusal repeats |
/// | `is_builder()` | ignored | the caller's bug, not the dependency's health |
/// | anything else | transient, may have been delivered | |
///
/// The errors of this module's own making: a request not sent for lack of
/// budget ([`SendError::not_sent_because`]) is a rejection by the
/// [deadline](Strategy::Deadline) (neither retried nor counted); with
/// `reqwest-middleware`, an error of another middleware is permanent.
#[derive(Copy, Clone, Debug, Default)]
pub struct ReqwestClassifier {
    status: HttpStatus,
}

impl ReqwestClassifier {
    /// The classifier, with the default bound on `Retry-After` hints
    /// ([`DEFAULT_MAX_RETRY_AFTER`](crate::classify::DEFAULT_MAX_RETRY_AFTER)).
    pub const fn new() -> Self {
        ReqwestClassifier {
            status: HttpStatus::new(),
        }
    }

    /// Clamps `Retry-After` hints to `max`.
    pub const fn max_retry_after(mut self, max: Duration) -> Self {
        self.status = self.status.max_retry_after(max);
        self
    }

    /// The outcome of a response.
    pub fn classify_response(&self, response: &reqwest::Response) -> Outcome {
        self.status.classify_response(&Head(response))
    }

    /// The outcome of an error.
    pub fn classify_error(&self, error: &reqwest::Error) -> Outcome {
        if let Some(status) = error.status() {
            return self.status.classify_response(&status.as_u16());
        }
        if error.is_builder() {
            Outcome::Ignored
        } else if error.is_connect() {
            Outcome::Transient(Transient::new().with_delivery(Delivery::NotDelivered))
        } else if error.is_decode() || error.is_redirect() {
            Outcome::Permanent
        } else {
            // Timeouts, resets, bodies cut short and the unknown.
            Outcome::transient()
        }
    }
}

/// The status and headers of a reqwest response, as the status classifier
/// reads them.
struct Head<'a>(&'a reqwest::Response);

impl HttpResponse for Head<'_> {
    fn status_code(&self) -> u16 {
        self.0.status().as_u16()
    }

    fn retry_after_header(&self) -> Option<&[u8]> {
        self.0
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.as_bytes())
    }

    fn for_each_retry_after(&self, each: &mut dyn FnMut(&[u8])) {
        for value in self.0.headers().get_all(http::header::RETRY_AFTER) {
            each(value.as_bytes());
        }
    }
}

fn not_sent() -> Outcome {
    Outcome::Rejected(Rejection::new(Strategy::Deadline))
}

impl Classify<reqwest::Response, reqwest::Error> for ReqwestClassifier {
    fn classify(&self, result: &Result<reqwest::Response, reqwest::Error>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(e) => self.classify_error(e),
        }
    }
}

/// As the table says, except that a transient failure that may have reached
/// the server, of a request whose method is not idempotent (a `POST` whose
/// connection reset, a `PATCH` that timed out), is permanent: not retried.
impl Classify<reqwest::Response, SendError> for ReqwestClassifier {
    fn classify(&self, result: &Result<reqwest::Response, SendError>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(SendError {
                kind: SendErrorKind::Reqwest { error, idempotent },
            }) => for_method(self.classify_error(error), *idempotent),
            Err(_) => not_sent(),
        }
    }
}

#[cfg(feature = "reqwest-middleware")]
impl Classify<reqwest::Response, reqwest_middleware::Error> for ReqwestClassifier {
    fn classify(&self, result: &Result<reqwest::Response, reqwest_middleware::Error>) -> Outcome {
        match result {
            Ok(response) => self.classify_response(response),
            Err(reqwest_middleware::Error::Reqwest(e)) => self.classify_error(e),
            Err(reqwest_middleware::Error::Middleware(e)) => {
                if let Some(once) = e.downcast_ref::<middleware::NonIdempotent>() {
                    for_method(self.classify_error(&once.0), false)
                } else if e.downcast_ref::<BudgetExhausted>().is_some() {
                    not_sent()
                } else {
                    Outcome::Permanent
                }
            }
        }
    }
}

/// Whether `request` can only be sent once: its body is a stream, which
/// `try_clone` cannot copy. [`send`] gives such a request one attempt.
pub fn is_one_shot(request: &reqwest::Request) -> bool {
    is_streamed(request)
}

/// Whether the pipeline may make more than one attempt.
fn retries<K, C: Clock>(pipeline: &Pipeline<K, C>) -> bool {
    #[cfg(feature = "retry")]
    return pipeline.retry_policy().is_some();
    #[cfg(not(feature = "retry"))]
    {
        let _ = pipeline;
        false
    }
}

/// `request` with the attempt's deadline, trace and request id written in, or why
/// it must not be sent (its budget is spent).
fn injected(
    outbound: &Outbound,
    ctx: &Context,
    mut request: reqwest::Request,
) -> Result<reqwest::Request, BudgetExhausted> {
    outbound
        .inject(ctx, request.headers_mut())
        .map(|()| request)
}

/// One attempt: the prepared request sent, or the budget's refusal.
async fn send_attempt(
    client: &reqwest::Client,
    attempt: Result<reqwest::Request, BudgetExhausted>,
    idempotent: bool,
) -> Result<reqwest::Response, SendError> {
    match attempt {
        Ok(request) => client
            .execute(request)
            .await
            .map_err(|e| SendError::reqwest(e, idempotent)),
        Err(budget) => Err(SendError::not_sent(budget)),
    }
}

/// Whether the body is a stream (checked without copying the request).
fn is_streamed(request: &reqwest::Request) -> bool {
    request.body().is_some_and(|body| body.as_bytes().is_none())
}

/// Sends `request` through `pipeline` under `ctx`: each attempt sends a clone
/// of it (`try_clone`), with the budget, trace context and request id of the
/// attempt's context written by `Outbound::new()`'s defaults. See
/// [`send_with_outbound`] to choose the headers.
///
/// A request whose body cannot be cloned gets one attempt, through
/// [`Pipeline::execute_once`] (no retry; the other layers apply), and its
/// budget header is written from `ctx` itself: it does not know the attempt
/// timeout, which still bounds the call on this side. A request
/// that does not build fails with the builder's error, classified as ignored,
/// before any layer runs.
pub fn send<'a, K, C>(
    pipeline: &'a Pipeline<K, C>,
    ctx: &'a Context,
    request: reqwest::RequestBuilder,
) -> impl Future<Output = Result<reqwest::Response, Error<SendError>>> + Send + 'a
where
    K: Classify<reqwest::Response, SendError> + Send + Sync,
    C: Clock + Send + Sync,
{
    send_with_outbound(pipeline, ctx, request, Outbound::new())
}

/// [`send`], with the headers written by `outbound`.
pub fn send_with_outbound<'a, K, C>(
    pipeline: &'a Pipeline<K, C>,
    ctx: &'a Context,
    request: reqwest::RequestBuilder,
    outbound: Outbound,
) -> impl Future<Output = Result<reqwest::Response, Error<SendError>>> + Send + 'a
where
    K: Classify<reqwest::Response, SendError> + Send + Sync,
    C: Clock + Send + Sync,
{
    let (client, request) = request.build_split();
    async move {
        let request = match request {
            Ok(request) => request,
            Err(e) => return Err(Error::inner(SendError::reqwest(e, true), Outcome::Ignored)),
        };
        let streamed = is_streamed(&request);
        let idempotent = idempotent(request.method());
        if !retries(pipeline) {
            // At most one attempt: the request goes to it as it is.
            let mut slot = Some(request);
            return pipeline
                .execute(ctx, |attempt_ctx| {
                    let attempt = slot
                        .take()
                        .map(|request| injected(&outbound, &attempt_ctx, request));
                    let client = &client;
                    async move {
                        let attempt = attempt.expect("a pipeline without a retry policy retried");
                        send_attempt(client, attempt, idempotent).await
                    }
                })
                .await;
        }
        if streamed {
            // Retries would need a copy of the stream: one attempt.
            let attempt = injected(&outbound, ctx, request);
            return pipeline
                .execute_once(ctx, send_attempt(&client, attempt, idempotent))
                .await;
        }
        pipeline
            .execute(ctx, |attempt_ctx| {
                // A body of bytes always clones (`is_streamed` is false).
                let attempt = request
                    .try_clone()
                    .map(|request| injected(&outbound, &attempt_ctx, request));
                let client = &client;
                async move {
                    let attempt = attempt.expect("a request whose body is bytes failed to clone");
                    send_attempt(client, attempt, idempotent).await
                }
            })
            .await
    }
}

/// [`send`] as a method of `reqwest::RequestBuilder`.
pub trait RequestBuilderExt: sealed::Sealed {
    /// Sends the request through `pipeline` under `ctx`; see [`send`].
    fn send_with<'a, K, C>(
        self,
        pipeline: &'a Pipeline<K, C>,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<reqwest::Response, Error<SendError>>> + Send + 'a
    where
        K: Classify<reqwest::Response, SendError> + Send + Sync,
        C: Clock + Send + Sync;
}

impl RequestBuilderExt for reqwest::RequestBuilder {
    fn send_with<'a, K, C>(
        self,
        pipeline: &'a Pipeline<K, C>,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<reqwest::Response, Error<SendError>>> + Send + 'a
    where
        K: Classify<reqwest::Response, SendError> + Send + Sync,
        C: Clock + Send + Sync,
    {
        send(pipeline, ctx, self)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for reqwest::RequestBuilder {}
}

#[cfg(feature = "reqwest-middleware")]
pub use middleware::{PipelineMiddleware, pipeline_error};

#[cfg(feature = "reqwest-middleware")]
mod middleware {
    use std::fmt;

    use http::Extensions;
    use palisade_classify::Classify;
    use palisade_clock::{Clock, TokioClock};
    use reqwest_middleware::{Middleware, Next};

    use crate::edge::Outbound;
    use crate::{Context, Error, Pipeline};

    /// A `reqwest_middleware::Middleware` that runs every request through a
    /// [`Pipeline`]: each attempt sends a clone of the request (`try_clone`)
    /// down the rest of the chain, with the budget, trace context and request
    /// id of the attempt's context written by [`Outbound`].
    ///
    /// - The call's context is the [`Context`] in the request's extensions
    ///   (`RequestBuilder::with_extension(ctx)`), or else the task's
    ///   ([`palisade::context::current`](palisade_context::current)).
    /// - A request whose body cannot be cloned (a stream) gets **one attempt**,
    ///   through [`Pipeline::execute_once`]: no retry.
    /// - Each attempt runs the rest of the chain with a copy of the
    ///   extensions; what the middlewares after this one insert in them does
    ///   not come back to those before it.
    /// - An error of the inner client passes through as it is, as does an
    ///   `Ok` response the classifier calls a failure (the last 503 after
    ///   the retries). Any other error (an open breaker, a timeout, retries
    ///   exhausted) is a `reqwest_middleware::Error::Middleware` holding the
    ///   pipeline's [`Error`]: [`pipeline_error`] finds it.
    ///
    /// ```
    /// use axum::{Router, http::StatusCode, routing::get};
    /// use palisade::reqwest::{PipelineMiddleware, ReqwestClassifier, pipeline_error};
    /// use palisade::breaker::{Breaker, BreakerConfig};
    /// use palisade::Pipeline;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A server on loopback that is down.
    /// let app = Router::new().route("/", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let url = format!("http://{}/", listener.local_addr()?);
    /// # #[allow(clippy::disallowed_methods)]
    /// tokio::spawn(async move { axum::serve(listener, app).await });
    ///
    /// let pipeline = Pipeline::builder("users-api")
    ///     .classifier(ReqwestClassifier::new())
    ///     .breaker(Breaker::new(BreakerConfig::default().consecutive_failures(Some(2)))?)
    ///     .build()?;
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
    ///     .with(PipelineMiddleware::new(pipeline))
    ///     .build();
    /// for _ in 0..2 {
    ///     assert_eq!(client.get(&url).send().await?.status(), 503);
    /// }
    /// // Two failures in a row: the breaker is open, nothing is sent.
    /// let error = client.get(&url).send().await.unwrap_err();
    /// assert!(pipeline_error(&error).unwrap().is_breaker_open());
    /// # Ok(())
    /// # }
    /// ```
    pub struct PipelineMiddleware<K, C: Clock = TokioClock> {
        pipeline: Pipeline<K, C>,
        outbound: Outbound,
    }

    impl<K, C: Clock> PipelineMiddleware<K, C> {
        /// Runs requests through `pipeline` (shared: clones of a pipeline share
        /// its breaker, limits and budget), writing `Outbound::new()`'s headers.
        pub fn new(pipeline: Pipeline<K, C>) -> Self {
            PipelineMiddleware {
                pipeline,
                outbound: Outbound::new(),
            }
        }

        /// Writes the headers `outbound` chooses instead.
        pub fn outbound(mut self, outbound: Outbound) -> Self {
            self.outbound = outbound;
            self
        }

        /// The pipeline.
        pub fn pipeline(&self) -> &Pipeline<K, C> {
            &self.pipeline
        }
    }

    impl<K, C: Clock> fmt::Debug for PipelineMiddleware<K, C> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PipelineMiddleware")
                .field("pipeline", &self.pipeline)
                .field("outbound", &self.outbound)
                .finish()
        }
    }

    /// reqwest's error of a request whose method is not idempotent, on its way
    /// from the attempt to the classifier (which then retries it only if it
    /// certainly did not reach the server); given back to the caller as the
    /// plain reqwest error.
    #[derive(Debug)]
    pub(super) struct NonIdempotent(pub(super) reqwest::Error);

    impl fmt::Display for NonIdempotent {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for NonIdempotent {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Marks the reqwest error of a non-idempotent request.
    fn mark(
        result: reqwest_middleware::Result<reqwest::Response>,
        idempotent: bool,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        match result {
            Err(reqwest_middleware::Error::Reqwest(e)) if !idempotent => {
                Err(reqwest_middleware::Error::middleware(NonIdempotent(e)))
            }
            result => result,
        }
    }

    /// A request asked to be sent a second time where it could be sent only
    /// once (never, unless a pipeline without a retry policy retried).
    #[derive(Debug)]
    struct SentOnce;

    impl fmt::Display for SentOnce {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("the request was already sent and cannot be sent again")
        }
    }

    impl std::error::Error for SentOnce {}

    /// The pipeline's error in a middleware error, if it holds one.
    pub fn pipeline_error(
        error: &reqwest_middleware::Error,
    ) -> Option<&Error<reqwest_middleware::Error>> {
        match error {
            reqwest_middleware::Error::Middleware(e) => e.downcast_ref(),
            reqwest_middleware::Error::Reqwest(_) => None,
        }
    }

    fn flatten(
        result: Result<reqwest::Response, Error<reqwest_middleware::Error>>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        match result {
            Ok(response) => Ok(response),
            Err(e) if e.is_inner() => match e.into_inner() {
                Ok(reqwest_middleware::Error::Middleware(e)) => match e.downcast::<NonIdempotent>()
                {
                    Ok(once) => Err(reqwest_middleware::Error::Reqwest(once.0)),
                    Err(e) => Err(reqwest_middleware::Error::Middleware(e)),
                },
                Ok(inner) => Err(inner),
                Err(e) => Err(reqwest_middleware::Error::middleware(e)),
            },
            Err(e) => Err(reqwest_middleware::Error::middleware(e)),
        }
    }

    #[async_trait::async_trait]
    impl<K, C> Middleware for PipelineMiddleware<K, C>
    where
        K: Classify<reqwest::Response, reqwest_middleware::Error> + Send + Sync + 'static,
        C: Clock + Send + Sync + 'static,
    {
        async fn handle(
            &self,
            request: reqwest::Request,
            extensions: &mut Extensions,
            next: Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            let (ctx, given) = match extensions.get::<Context>() {
                Some(ctx) => (ctx.clone(), true),
                None => (palisade_context::current(), false),
            };
            let streamed = super::is_streamed(&request);
            let idempotent = super::idempotent(request.method());
            if streamed && super::retries(&self.pipeline) {
                // Retries would need a copy of the stream: one attempt.
                let mut request = request;
                if let Err(budget) = self.outbound.inject(&ctx, request.headers_mut()) {
                    return flatten(
                        self.pipeline
                            .execute_once(&ctx, async move {
                                Err(reqwest_middleware::Error::middleware(budget))
                            })
                            .await,
                    );
                }
                let result = self
                    .pipeline
                    .execute_once(&ctx, async move {
                        mark(next.run(request, extensions).await, idempotent)
                    })
                    .await;
                return flatten(result);
            }
            if !super::retries(&self.pipeline) {
                // At most one attempt: the request and the extensions go to
                // it as they are, with no copy.
                let mut slot = Some((request, extensions, next));
                let result = self
                    .pipeline
                    .execute(&ctx, |attempt_ctx| {
                        let taken = slot.take().map(|(mut request, extensions, next)| {
                            if given {
                                extensions.insert(attempt_ctx.clone());
                            }
                            self.outbound
                                .inject(&attempt_ctx, request.headers_mut())
                                .map(|()| (request, extensions, next))
                        });
                        async move {
                            match taken {
                                Some(Ok((request, extensions, next))) => {
                                    mark(next.run(request, extensions).await, idempotent)
                                }
                                Some(Err(budget)) => {
                                    Err(reqwest_middleware::Error::middleware(budget))
                                }
                                None => Err(reqwest_middleware::Error::middleware(SentOnce)),
                            }
                        }
                    })
                    .await;
                return flatten(result);
            }
            let base: &Extensions = extensions;
            let result = self
                .pipeline
                .execute(&ctx, |attempt_ctx| {
                    let next = next.clone();
                    let mut extensions = base.clone();
                    if given {
                        extensions.insert(attempt_ctx.clone());
                    }
                    let attempt = request.try_clone().map(|mut request| {
                        self.outbound
                            .inject(&attempt_ctx, request.headers_mut())
                            .map(|()| request)
                    });
                    async move {
                        match attempt {
                            Some(Ok(request)) => {
                                mark(next.run(request, &mut extensions).await, idempotent)
                            }
                            Some(Err(budget)) => Err(reqwest_middleware::Error::middleware(budget)),
                            None => Err(reqwest_middleware::Error::middleware(SentOnce)),
                        }
                    }
                })
                .await;
            flatten(result)
        }
    }
}
