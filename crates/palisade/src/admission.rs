//! Overload protection for a server: a tower layer that admits, queues or sheds
//! each incoming `http::Request` with a [`palisade_limit::admission::Admission`]
//! controller (an adaptive concurrency limit shared by criticality classes, a
//! bounded deadline-aware CoDel queue, retries shed first).
//!
//! For each request the layer reads:
//!
//! - **the deadline** from the [`Context`] in the request's extensions, as the
//!   inbound layer ([`Inbound`](crate::edge::Inbound)) puts it there: put the
//!   admission layer *inside* the inbound layer;
//! - **the criticality** from a [`Criticality`] value of that context (set by the
//!   application), else the criticality header (default `x-palisade-criticality`:
//!   `critical`, `default`, `sheddable`), else `default`;
//! - **the retry marker** from an [`Attempt`] value of the context, else the
//!   `x-retry-attempt` header, or gRPC's `grpc-previous-rpc-attempts`, above 0.
//!
//! A refused request is answered at once, without calling the service: `503
//! Service Unavailable` with `Retry-After` (whole seconds, at least 1), or, for a
//! gRPC request (`content-type: application/grpc…`), `RESOURCE_EXHAUSTED` (8) with
//! `grpc-retry-pushback-ms`. Each decision is a `tracing` event (`debug` for a
//! refusal) and, with the `metrics` feature, a count of
//! `palisade_admission_requests_total` labelled by `class` and `outcome`
//! (`admitted` or the refusal's reason: `queue_full`, `queue_timeout`,
//! `deadline`, `retry`, `evicted`).
//!
//! An admitted request's latency is reported to the limit when its response is
//! ready: `503`, `429` and `504` answers count as drops, other answers as
//! successes; a service error or a response future dropped (the client went away)
//! adds no sample. The permit is released in every case.
//!
//! ```
//! use palisade::admission::{AdmissionLayer, Criticality};
//! use palisade::edge::Inbound;
//! use palisade::limit::admission::AdmissionConfig;
//! use http::{Request, Response, StatusCode};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let handler = service_fn(|_request: Request<()>| async move {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("served")))
//! });
//! let admission = AdmissionLayer::new(AdmissionConfig::fixed(1)).unwrap();
//! let server = Inbound::new().layer().layer(admission.layer(handler));
//!
//! let request = Request::builder()
//!     .header("x-request-timeout-ms", "250")
//!     .header("x-palisade-criticality", "critical")
//!     .body(())
//!     .unwrap();
//! let response = server.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(admission.admission().snapshot().admitted[0], 1); // one critical
//! # let _ = Criticality::Critical;
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use palisade_limit::admission::Acquire;
pub use palisade_limit::admission::{
    Admission, AdmissionConfig, AdmissionPermit, AdmissionRejected, Criticality, Reason, Ticket,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::{ConfigError, Context};

/// Names of the metrics, for dashboards and alerts.
pub mod names {
    /// Requests seen by an admission layer, by `class` and `outcome`.
    pub const ADMISSIONS: &str = "palisade_admission_requests_total";
}

/// The header read for the criticality by default.
pub const CRITICALITY_HEADER: &str = "x-palisade-criticality";
/// The header read for the retry marker by default.
pub const RETRY_HEADER: &str = "x-retry-attempt";

/// A request's attempt number, as a [`Context`] value: 0 is the first attempt,
/// above 0 a retry (shed before first attempts).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Attempt(pub u32);

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
const OUTCOMES: [&str; 6] = [
    "admitted",
    "queue_full",
    "queue_timeout",
    "deadline",
    "retry",
    "evicted",
];

struct Counters {
    #[cfg(feature = "metrics")]
    counters: [[metrics::Counter; OUTCOMES.len()]; 3],
}

impl Counters {
    fn new() -> Self {
        Counters {
            #[cfg(feature = "metrics")]
            counters: Criticality::ALL.map(|c| {
                OUTCOMES.map(
                    |o| metrics::counter!(names::ADMISSIONS, "class" => c.as_str(), "outcome" => o),
                )
            }),
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn count(&self, class: Criticality, outcome: &str) {
        #[cfg(feature = "metrics")]
        {
            let c = Criticality::ALL
                .iter()
                .position(|k| *k == class)
                .unwrap_or(1);
            let o = OUTCOMES.iter().position(|k| *k == outcome).unwrap_or(1);
            self.counters[c][o].increment(1);
        }
    }
}

struct Shared {
    admission: Admission,
    criticality_header: HeaderName,
    retry_header: HeaderName,
    counters: Counters,
}

/// A tower layer of admission control for servers; see the [module docs](self).
///
/// Cloning is cheap; clones (and the services they make) share one controller.
#[derive(Clone)]
pub struct AdmissionLayer {
    shared: std::sync::Arc<Shared>,
}

impl fmt::Debug for AdmissionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("admission", &self.shared.admission)
            .field("criticality_header", &self.shared.criticality_header)
            .field("retry_header", &self.shared.retry_header)
            .finish()
    }
}

impl AdmissionLayer {
    /// A layer with a new controller (on the tokio clock, whose axis the
    /// inbound context's deadline is on).
    pub fn new(config: AdmissionConfig) -> Result<Self, ConfigError> {
        Ok(Self::with_admission(Admission::new(config)?))
    }

    /// A layer over an existing controller.
    pub fn with_admission(admission: Admission) -> Self {
        AdmissionLayer {
            shared: std::sync::Arc::new(Shared {
                admission,
                criticality_header: HeaderName::from_static(CRITICALITY_HEADER),
                retry_header: HeaderName::from_static(RETRY_HEADER),
                counters: Counters::new(),
            }),
        }
    }

    /// Reads the criticality from `header` instead.
    pub fn criticality_header(self, header: HeaderName) -> Self {
        self.with(|s| s.criticality_header = header)
    }

    /// Reads the retry marker from `header` instead.
    pub fn retry_header(self, header: HeaderName) -> Self {
        self.with(|s| s.retry_header = header)
    }

    fn with(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = std::sync::Arc::try_unwrap(self.shared).unwrap_or_else(|arc| Shared {
            admission: arc.admission.clone(),
            criticality_header: arc.criticality_header.clone(),
            retry_header: arc.retry_header.clone(),
            counters: Counters::new(),
        });
        f(&mut shared);
        AdmissionLayer {
            shared: std::sync::Arc::new(shared),
        }
    }

    /// The controller, for its snapshot.
    pub fn admission(&self) -> &Admission {
        &self.shared.admission
    }

    fn ticket<B>(&self, request: &Request<B>) -> Ticket {
        let s = &self.shared;
        let headers = request.headers();
        let ctx = request.extensions().get::<Context>();
        let class = ctx
            .and_then(|c| c.get::<Criticality>().copied())
            .or_else(|| {
                headers
                    .get(&s.criticality_header)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Criticality::parse)
            })
            .unwrap_or_default();
        let attempt = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let retry = ctx
            .and_then(|c| c.get::<Attempt>().map(|a| a.0))
            .or_else(|| attempt(&s.retry_header))
            .or_else(|| attempt(&HeaderName::from_static("grpc-previous-rpc-attempts")))
            .is_some_and(|n| n > 0);
        let mut ticket = Ticket::new(class).retry(retry);
        if let Some(deadline) = ctx.and_then(Context::deadline) {
            ticket = ticket.deadline(deadline);
        }
        ticket
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> AdmissionService<S> {
        AdmissionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`AdmissionLayer`].
#[derive(Clone, Debug)]
pub struct AdmissionService<S> {
    inner: S,
    layer: AdmissionLayer,
}

impl<S, B, RB> Service<Request<B>> for AdmissionService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = AdmissionFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let ticket = self.layer.ticket(&request);
        let grpc = request
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        AdmissionFuture {
            state: FutureState::Admitting {
                acquire: self.layer.shared.admission.acquire(ticket),
                request: Some((inner, request)),
            },
            layer: self.layer.clone(),
            class: ticket.class(),
            grpc,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`AdmissionService`] call.
    pub struct AdmissionFuture<S: Service<Request<B>>, B> {
        #[pin]
        state: FutureState<S, B>,
        layer: AdmissionLayer,
        class: Criticality,
        grpc: bool,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum FutureState<S: Service<Request<B>>, B> {
        Admitting {
            acquire: Acquire,
            request: Option<(S, Request<B>)>,
        },
        Running {
            #[pin]
            fut: S::Future,
            permit: Option<AdmissionPermit>,
        },
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for AdmissionFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionFuture")
            .field("class", &self.class)
            .finish_non_exhaustive()
    }
}

impl<S, B, RB> Future for AdmissionFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Output = Result<Response<RB>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Admitting { acquire, request } => {
                    let result = ready!(Pin::new(acquire).poll(cx));
                    let shared = &this.layer.shared;
                    match result {
                        Ok(permit) => {
                            shared.counters.count(*this.class, "admitted");
                            let (mut inner, request) = request.take().expect("polled once");
                            let fut = inner.call(request);
                            this.state.set(FutureState::Running {
                                fut,
                                permit: Some(permit),
                            });
                        }
                        Err(e) => {
                            shared.counters.count(e.class(), e.reason().as_str());
                            tracing::debug!(
                                class = e.class().as_str(),
                                reason = e.reason().as_str(),
                                retry = e.is_retry(),
                                limit = e.limit(),
                                "request shed"
                            );
                            return Poll::Ready(Ok(refusal(&e, *this.grpc)));
                        }
                    }
                }
                StateProj::Running { fut, permit } => {
                    let result = ready!(fut.poll(cx));
                    if let Some(permit) = permit.take() {
                        match &result {
                            Ok(r)
                                if matches!(
                                    r.status(),
                                    StatusCode::SERVICE_UNAVAILABLE
                                        | StatusCode::TOO_MANY_REQUESTS
                                        | StatusCode::GATEWAY_TIMEOUT
                                ) =>
                            {
                                permit.dropped()
                            }
                            Ok(_) => permit.success(),
                            Err(_) => permit.ignore(),
                        }
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// The answer to a refused request.
fn refusal<RB: Default>(e: &AdmissionRejected, grpc: bool) -> Response<RB> {
    let mut response = Response::new(RB::default());
    let headers = response.headers_mut();
    let after = e.retry_after();
    if grpc {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("overloaded: request shed"),
        );
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(after.as_millis().min(u128::from(u64::MAX)) as u64),
        );
    } else {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}
