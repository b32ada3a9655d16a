//! palisade's errors as axum responses, so that a handler calling a dependency
//! through a [`Pipeline`](crate::Pipeline) can use `?`, and a
//! [`ServerLayer`](crate::tower::ServerLayer) can answer for the server with
//! [`respond`].
//!
//! | error | status | why |
//! | --- | --- | --- |
//! | a rejection (open breaker, full bulkhead, rate limit, retry budget) | `503 Service Unavailable`, `Retry-After` | the service is shedding load; the header carries the rejection's hint in whole seconds, rounded up, or [`DEFAULT_RETRY_AFTER`] without one |
//! | a timeout, a context ended by its deadline | `504 Gateway Timeout` | the time ran out |
//! | a panic | `500 Internal Server Error` | a bug |
//! | the caller went away (cancelled) | `503 Service Unavailable` | nobody reads the answer; a status that is not a server bug |
//! | the dependency's error, retries exhausted, an injected fault | `502 Bad Gateway` | what this service depends on failed |
//! | a fallback that failed | `500 Internal Server Error` | |
//!
//! The body is a short text naming the kind of failure
//! ([`Error::kind_str`]), never the inner error's message: what a dependency
//! said is not for the client to read. Log the error itself where it is
//! handled.
//!
//! ```
//! use axum::{Router, routing::get};
//! use palisade::{Context, Error, Pipeline};
//!
//! async fn user(pipeline: Pipeline) -> Result<String, Error<std::io::Error>> {
//!     # #[allow(clippy::disallowed_methods)]
//!     let ctx = Context::background();
//!     let name = pipeline
//!         .execute(&ctx, |_ctx| async { Ok::<_, std::io::Error>("ada".to_owned()) })
//!         .await?; // an open breaker answers 503 with Retry-After
//!     Ok(name)
//! }
//!
//! let pipeline = Pipeline::builder("users").build().unwrap();
//! let app: Router = Router::new().route("/user", get(move || user(pipeline.clone())));
//! # let _ = app;
//! ```

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use palisade_context::Cause;

use crate::Error;

/// The `Retry-After` of a rejection that carries no hint: 1 second, the
/// shortest the header can say, so that callers come back soon but not at
/// once.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The status code [`IntoResponse`] gives `error` (the table of the module).
pub fn status_of<E>(error: &Error<E>) -> StatusCode {
    if error.is_rejected() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if error.is_timeout() || error.cancel_cause().is_some_and(ended_by_deadline) {
        StatusCode::GATEWAY_TIMEOUT
    } else if error.is_cancelled() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if error.is_panic() || error.is_fallback_failed() {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_GATEWAY
    }
}

fn ended_by_deadline(cause: &Cause) -> bool {
    cause.is_deadline_exceeded()
}

/// The `Retry-After` [`IntoResponse`] writes for `error`: for a rejection,
/// its hint rounded up to whole seconds (at least 1), or
/// [`DEFAULT_RETRY_AFTER`]; for anything else, none.
pub fn retry_after_of<E>(error: &Error<E>) -> Option<Duration> {
    let rejection = error.rejection()?;
    let hint = rejection.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
    Some(Duration::from_secs(
        hint.as_nanos().div_ceil(1_000_000_000).max(1) as u64,
    ))
}

impl<E> IntoResponse for Error<E> {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        let mut response = Response::new(Body::from(self.kind_str()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(after) = retry_after_of(&self) {
            headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
        }
        response
    }
}

/// The answer of a [`ServerLayer`](crate::tower::ServerLayer) for an axum
/// `Router`: the error as a response, by [`IntoResponse`].
///
/// ```
/// use axum::{Router, routing::get};
/// use palisade::Pipeline;
/// use palisade::limit::{Bulkhead, BulkheadConfig};
/// use palisade::tower::ServerLayer;
///
/// let shed = Pipeline::builder("server")
///     .bulkhead(Bulkhead::new(BulkheadConfig::new(64)).unwrap())
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(ServerLayer::new(shed, palisade::axum::respond));
/// # let _ = app;
/// ```
pub fn respond<E>(error: Error<E>) -> Result<Response, E> {
    Ok(error.into_response())
}
