//! Admission control for servers, as a tower layer: an adaptive concurrency limit
//! shared by criticality classes, with a deadline-aware queue
//! ([`palisade_limit::admission`]).
//!
//! [`AdmissionLayer`] wraps an HTTP (or gRPC) service. For each request it reads:
//!
//! - the deadline of the request's [`Context`], from its extensions, where the
//!   [inbound layer](crate::edge::Inbound) puts it: place this layer *inside* the
//!   inbound one (added before it in a `ServiceBuilder`, which runs layers outside
//!   in). Without a Context a request has no deadline;
//! - its [`Criticality`]: the header `x-palisade-criticality` (`critical`,
//!   `default`, `sheddable`; the name is configurable), else a `Criticality`
//!   value of the Context set by the application, else default;
//! - whether it is a retry: the header `x-retry-attempt` above 0, else a
//!   [`RetryAttempt`] value of the Context above 0.
//!
//! A refused request does not reach the service. It is answered `503 Service
//! Unavailable` with `Retry-After` (whole seconds, at least 1) or, for a gRPC request
//! (`content-type: application/grpc…`), HTTP 200 with `grpc-status: 8`
//! (`RESOURCE_EXHAUSTED`) and `grpc-retry-pushback-ms`. Each refusal is a `tracing`
//! event and, with the `metrics` feature, a `palisade_admission_rejections_total`
//! counter labelled by `class` and `reason`; admissions count in
//! `palisade_admission_admitted_total` by `class`.
//!
//! The service's response teaches the limit: a 503 or 504 answer (or a gRPC
//! `UNAVAILABLE`/`DEADLINE_EXCEEDED`/`RESOURCE_EXHAUSTED` in the headers) counts
//! as a drop, anything else as a latency sample; an error of the service adds no
//! sample.
//!
//! A request admitted at once takes no lock and allocates nothing; see
//! [the controller's costs](palisade_limit::admission#cost).
//!
//! # Example
//!
//! ```
//! use palisade::admission::AdmissionLayer;
//! use palisade::limit::admission::{AdmissionConfig, AdmissionController};
//! use tower::ServiceBuilder;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let controller = AdmissionController::new(AdmissionConfig::default()).unwrap();
//! let service = ServiceBuilder::new()
//!     .layer(palisade::edge::Inbound::new().layer())
//!     .layer(AdmissionLayer::new(controller.clone()))
//!     .service_fn(|_request: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hello")))
//!     });
//! # let _ = service;
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use palisade_context::Context;
use palisade_limit::admission::{
    AdmissionController, AdmissionPermit, Admit, Criticality, Refused, RetryAttempt,
};
use tower_layer::Layer;
use tower_service::Service;

pub use palisade_limit::admission::{AdmissionConfig, Reason, Shares};

/// The metric names of this layer.
pub mod names {
    /// Requests refused admission, by `class` and `reason`.
    pub const REJECTIONS: &str = "palisade_admission_rejections_total";
    /// Requests admitted, by `class`.
    pub const ADMITTED: &str = "palisade_admission_admitted_total";
}

/// The header a request's criticality is read from by default.
pub const CRITICALITY_HEADER: &str = "x-palisade-criticality";
/// The header a retry's attempt number is read from by default (above 0: a retry).
pub const RETRY_HEADER: &str = "x-retry-attempt";

/// A tower layer admitting requests through an [`AdmissionController`]; see the
/// [module docs](self).
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    controller: AdmissionController,
    criticality_header: HeaderName,
    retry_header: HeaderName,
}

impl AdmissionLayer {
    /// The layer over `controller` (shared by clones of the layer and its
    /// services), with the default headers.
    pub fn new(controller: AdmissionController) -> Self {
        AdmissionLayer {
            controller,
            criticality_header: HeaderName::from_static(CRITICALITY_HEADER),
            retry_header: HeaderName::from_static(RETRY_HEADER),
        }
    }

    /// Reads the criticality from this header instead.
    pub fn criticality_header(mut self, name: HeaderName) -> Self {
        self.criticality_header = name;
        self
    }

    /// Reads the retry attempt from this header instead.
    pub fn retry_header(mut self, name: HeaderName) -> Self {
        self.retry_header = name;
        self
    }

    /// The controller.
    pub fn controller(&self) -> &AdmissionController {
        &self.controller
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of an [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S> AdmissionService<S> {
    fn request<B>(&self, request: &Request<B>) -> palisade_limit::admission::Request {
        let ctx = request.extensions().get::<Context>();
        let headers = request.headers();
        let criticality = headers
            .get(&self.layer.criticality_header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Criticality>().ok())
            .or_else(|| ctx.and_then(|c| c.get::<Criticality>().copied()))
            .unwrap_or_default();
        let retry = headers
            .get(&self.layer.retry_header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map(|n| n > 0)
            .or_else(|| ctx.and_then(|c| c.get::<RetryAttempt>()).map(|r| r.0 > 0))
            .unwrap_or(false);
        palisade_limit::admission::Request::new(criticality)
            .with_retry(retry)
            .with_deadline(ctx.and_then(Context::deadline))
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl<S, B, RB> Service<Request<B>> for AdmissionService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = AdmissionFuture<S, B, RB>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let admit = self.layer.controller.acquire(self.request(&request));
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        AdmissionFuture {
            state: State::Admitting {
                grpc: is_grpc(&request),
                admit,
                request: Some(request),
                inner,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AdmissionService`] call.
    pub struct AdmissionFuture<S: Service<Request<B>>, B, RB> {
        #[pin]
        state: State<S, B, RB>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: Service<Request<B>>, B, RB> {
        Admitting {
            grpc: bool,
            admit: Admit,
            request: Option<Request<B>>,
            inner: S,
        },
        Running {
            #[pin]
            fut: S::Future,
            permit: Option<AdmissionPermit>,
            body: std::marker::PhantomData<fn() -> RB>,
        },
        Done,
    }
}

impl<S: Service<Request<B>>, B, RB> fmt::Debug for AdmissionFuture<S, B, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionFuture").finish_non_exhaustive()
    }
}

/// The answer to a refused request.
fn refusal<RB: Default>(refused: &Refused, grpc: bool) -> Response<RB> {
    let class = refused.criticality().as_str();
    let reason = refused.reason().as_str();
    tracing::debug!(
        class,
        reason,
        retry = refused.is_retry(),
        "request refused admission"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REJECTIONS, "class" => class, "reason" => reason).increment(1);
    let pushback = refused.retry_after();
    let mut response = Response::new(RB::default());
    let headers = response.headers_mut();
    if grpc {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("overloaded: request refused admission"),
        );
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(pushback.as_millis().min(u128::from(u64::MAX)) as u64),
        );
    } else {
        let secs = pushback.as_secs() + u64::from(pushback.subsec_nanos() > 0);
        headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// Whether a response says the service was overloaded.
fn overloaded<RB>(response: &Response<RB>) -> bool {
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT {
        return true;
    }
    // UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED in trailers-only answers.
    matches!(
        response
            .headers()
            .get("grpc-status")
            .map(HeaderValue::as_bytes),
        Some(b"14" | b"4" | b"8")
    )
}

impl<S, B, RB> Future for AdmissionFuture<S, B, RB>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Admitting {
                    grpc,
                    admit,
                    request,
                    inner,
                } => match ready!(Pin::new(admit).poll(cx)) {
                    Err(refused) => {
                        let response = refusal(&refused, *grpc);
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response));
                    }
                    Ok(permit) => {
                        #[cfg(feature = "metrics")]
                        metrics::counter!(names::ADMITTED, "class" => permit.criticality().as_str())
                            .increment(1);
                        let request = request.take().expect("the request, until admitted");
                        let fut = inner.call(request);
                        this.state.set(State::Running {
                            fut,
                            permit: Some(permit),
                            body: std::marker::PhantomData,
                        });
                    }
                },
                StateProj::Running { fut, permit, .. } => {
                    let result = ready!(fut.poll(cx));
                    if let Some(permit) = permit.take() {
                        match &result {
                            Ok(response) if overloaded(response) => permit.dropped(),
                            Ok(_) => permit.success(),
                            Err(_) => permit.ignore(),
                        }
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Done => panic!("an admission future polled after it completed"),
            }
        }
    }
}
