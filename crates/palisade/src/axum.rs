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
//! A server whose handler calls a dependency through a breaker and answers
//! with `?`, and a hyper client whose requests carry their deadline and trace
//! (the [`edge`](crate::edge) layers on both sides):
//!
//! ```
//! use axum::{Router, extract::Request, routing::get};
//! use http_body_util::{BodyExt, Empty};
//! use hyper::body::Bytes;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use palisade::breaker::{Breaker, BreakerConfig};
//! use palisade::classify::HttpStatus;
//! use palisade::edge::{Inbound, Outbound};
//! use palisade::{Context, Error, Pipeline};
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt};
//!
//! /// Calls a database that is down: the breaker opens after two failures.
//! async fn user(db: Pipeline, request: Request) -> Result<String, Error<std::io::Error>> {
//!     // The request's context, made by `Inbound` from its headers.
//!     let ctx = request.extensions().get::<Context>().cloned().unwrap_or_default();
//!     let name = db
//!         .execute(&ctx, |_attempt| async { Err(std::io::Error::other("connection refused")) })
//!         .await?; // 502 for the failure, 503 with Retry-After once the breaker is open
//!     Ok(name)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = Pipeline::builder("db")
//!     .breaker(Breaker::new(BreakerConfig::default().consecutive_failures(Some(2)))?)
//!     .build()?;
//! let app = Router::new()
//!     .route("/user", get(move |request: Request| user(db.clone(), request)))
//!     .layer(Inbound::new().layer());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let uri: hyper::Uri = format!("http://{}/user", listener.local_addr()?).parse()?;
//! # #[allow(clippy::disallowed_methods)]
//! tokio::spawn(async move { axum::serve(listener, app).await });
//!
//! // The client: hyper-util's, under the outbound layer, called through a
//! // pipeline that puts each attempt's context in the request.
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
//! let client = Outbound::new().layer().layer(client);
//! let upstream = Pipeline::builder("user-service").classifier(HttpStatus::new()).build()?;
//! # #[allow(clippy::disallowed_methods)]
//! let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(2));
//! let mut statuses = Vec::new();
//! for _ in 0..3 {
//!     let response = upstream
//!         .execute(&ctx, |attempt| {
//!             let mut request = http::Request::get(uri.clone()).body(Empty::new()).unwrap();
//!             request.extensions_mut().insert(attempt); // sent as x-request-timeout-ms
//!             client.clone().oneshot(request)
//!         })
//!         .await?;
//!     let retry_after = response.headers().get("retry-after").cloned();
//!     statuses.push((response.status().as_u16(), retry_after));
//!     response.into_body().collect().await?;
//! }
//! assert_eq!(statuses[0], (502, None));
//! assert_eq!(statuses[2].0, 503);
//! assert!(statuses[2].1.is_some());
//! # Ok(())
//! # }
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
