//! The edges of a service: the [`Context`] of a request arriving at a server,
//! made from its deadline and trace headers, and the headers of a request
//! leaving, written from the attempt's context with no code in the call.
//!
//! - [`Inbound`] makes an [`InboundLayer`] for any tower `Service` of
//!   `http::Request`s (axum's `Router::layer`, hyper with `hyper-util`'s tower
//!   adapter). For each request it reads the deadline (an ordered list of
//!   headers: `grpc-timeout`, then `x-request-timeout-ms`), clamps it to the
//!   server's maximum and to the route's own limit, reads or makes the request id
//!   (`x-request-id`) and the trace context (W3C `traceparent` / `tracestate`,
//!   else B3), and puts a `Context` carrying all three in the request's
//!   extensions. The context is cancelled when the client goes away (the
//!   response future is dropped) and enforced: a request still running at its
//!   deadline is answered `504 Gateway Timeout` and its handler dropped. A panic
//!   in the handler, in its future or in the synchronous part of its call, is
//!   answered `500`.
//! - [`Outbound`] makes an [`OutboundLayer`] for an HTTP client `Service`: from
//!   the context in the request's extensions (the attempt's context that
//!   [`Pipeline::execute`](crate::Pipeline::execute) gives the call, which puts
//!   it in the request it builds; a [`PipelineLayer`](crate::tower::PipelineLayer)
//!   does it for each attempt of request types it can clone), or else the
//!   task's context, it writes the time remaining minus a safety margin, the
//!   trace context of a new span of the same trace, and the request id. A request whose budget is
//!   below the minimum is not sent: it fails at once with
//!   [`OutboundError::Budget`]. [`Outbound::inject`] does the same to a
//!   `HeaderMap` for clients that are not tower services.
//!
//! Only relative budgets cross the wire (durations, never instants), so the
//! clocks of the two hosts need not agree.
//!
//! ```
//! use palisade::Context;
//! use palisade::edge::{Inbound, Outbound};
//! use palisade::context::trace::TraceContext;
//! use http::{Request, Response};
//! use std::time::Duration;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A server that reads what the request carries.
//! let handler = service_fn(|request: Request<()>| async move {
//!     let ctx = request.extensions().get::<Context>().unwrap();
//!     let remaining = ctx.remaining().unwrap();
//!     let trace = TraceContext::from_context(ctx).unwrap();
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("{remaining:?} {}", trace.trace_id())))
//! });
//! let server = Inbound::new().layer().layer(handler);
//! let request = Request::builder()
//!     .header("x-request-timeout-ms", "250")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(())
//!     .unwrap();
//! let response = server.oneshot(request).await.unwrap();
//! assert_eq!(response.body(), "250ms 4bf92f3577b34da6a3ce929d0e0e4736");
//!
//! // A client call under that context carries the budget on.
//! let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(250));
//! let mut headers = http::HeaderMap::new();
//! Outbound::new().inject(&ctx, &mut headers).unwrap();
//! assert_eq!(headers["x-request-timeout-ms"], "245"); // the 5 ms margin taken off
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use palisade_clock::{Clock, Timestamp, TokioClock};
use palisade_context::header::{
    GRPC_TIMEOUT, decode_grpc_timeout_bytes_with_max, decode_grpc_timeout_with_max,
    decode_millis_bytes_with_max, decode_millis_with_max, encode_grpc_timeout,
};
use palisade_context::trace::{
    self, RequestId, TRACEPARENT_LEN, TraceContext, TraceFlags, decode_b3, decode_b3_multi,
    decode_traceparent_bytes, decode_tracestate, encode_b3, encode_traceparent_bytes,
};
use palisade_context::{CancelGuard, Cause, Context};
use tower_layer::Layer;
use tower_service::Service;

/// The milliseconds deadline header most HTTP services use.
pub const X_REQUEST_TIMEOUT_MS: &str = "x-request-timeout-ms";
/// Envoy's header for the time the proxy will wait, in milliseconds.
pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: &str = "x-envoy-expected-rq-timeout-ms";

// The names the layers look up, parsed once: a lookup by `&str` parses the
// name on every request.
static GRPC_TIMEOUT_NAME: HeaderName = HeaderName::from_static(GRPC_TIMEOUT);
static TRACEPARENT_NAME: HeaderName = HeaderName::from_static(trace::TRACEPARENT);
static TRACESTATE_NAME: HeaderName = HeaderName::from_static(trace::TRACESTATE);
static B3_NAME: HeaderName = HeaderName::from_static(trace::B3);

/// A header that carries a deadline as the time remaining.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineHeader {
    /// `grpc-timeout`: digits and a unit (`1500m`).
    GrpcTimeout,
    /// A header of whole milliseconds (`1500`), such as
    /// [`X_REQUEST_TIMEOUT_MS`].
    Millis(HeaderName),
}

impl DeadlineHeader {
    /// A milliseconds header of this name.
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name (a programming error: names are
    /// constants).
    pub fn millis(name: &'static str) -> DeadlineHeader {
        DeadlineHeader::Millis(HeaderName::from_static(name))
    }

    /// The header's name.
    pub fn name(&self) -> &str {
        self.header_name().as_str()
    }

    fn header_name(&self) -> &HeaderName {
        match self {
            DeadlineHeader::GrpcTimeout => &GRPC_TIMEOUT_NAME,
            DeadlineHeader::Millis(name) => name,
        }
    }

    /// The deadline in `value`; the reason it has none, as text, if not.
    #[inline]
    fn decode(&self, value: &HeaderValue, max: Duration) -> Result<Duration, String> {
        // The bytes as they are: a value that decodes is digits (and a unit)
        // within optional whitespace, visible ASCII.
        let decoded = match self {
            DeadlineHeader::GrpcTimeout => {
                decode_grpc_timeout_bytes_with_max(value.as_bytes(), max)
            }
            DeadlineHeader::Millis(_) => decode_millis_bytes_with_max(value.as_bytes(), max),
        };
        match decoded {
            Ok(d) => Ok(d),
            Err(_) => self.refusal(value, max),
        }
    }

    /// Why `value` gives no deadline, worked out from its text.
    #[cold]
    fn refusal(&self, value: &HeaderValue, max: Duration) -> Result<Duration, String> {
        let Ok(value) = value.to_str() else {
            return Err("the value is not visible ASCII".to_string());
        };
        match self {
            DeadlineHeader::GrpcTimeout => decode_grpc_timeout_with_max(value, max),
            DeadlineHeader::Millis(_) => decode_millis_with_max(value, max),
        }
        .map_err(|e| e.to_string())
    }
}

/// What the inbound layer does with a deadline header it cannot read (garbage,
/// a negative or overflowing number, the header sent more than once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadHeader {
    /// Skip it (on to the next deadline header of the list), count it and log a
    /// debug event. The default: a bad header is the caller's bug, and failing
    /// the request for it turns a bug into an outage.
    #[default]
    Ignore,
    /// Answer `400 Bad Request` without calling the handler.
    Reject,
}

/// How a server makes the context of each request; builds an [`InboundLayer`].
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`deadline_headers`](Self::deadline_headers) | `grpc-timeout`, then `x-request-timeout-ms` | the two forms in use; the first one present and readable wins |
/// | [`max_deadline`](Self::max_deadline) | 60 s | a caller cannot pin the server's resources for longer than a request should take |
/// | [`route_limit`](Self::route_limit) | none | the route's own limit, applied also when the caller sends no deadline |
/// | [`bad_header`](Self::bad_header) | [`BadHeader::Ignore`] | see there |
/// | [`request_id_header`](Self::request_id_header) | `x-request-id` | the common name; an absent or invalid id is replaced by a new one |
/// | [`sample_new_traces`](Self::sample_new_traces) | `false` | a trace the server starts itself is not sampled unless you say so |
#[derive(Clone, Debug)]
pub struct Inbound {
    deadline_headers: Vec<DeadlineHeader>,
    max_deadline: Duration,
    route_limit: Option<Duration>,
    bad_header: BadHeader,
    request_id_header: HeaderName,
    sample_new_traces: bool,
    grpc: bool,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound::new()
    }
}

impl Inbound {
    /// The defaults of the table above.
    pub fn new() -> Inbound {
        Inbound {
            deadline_headers: vec![
                DeadlineHeader::GrpcTimeout,
                DeadlineHeader::millis(X_REQUEST_TIMEOUT_MS),
            ],
            max_deadline: Duration::from_secs(60),
            route_limit: None,
            bad_header: BadHeader::Ignore,
            request_id_header: HeaderName::from_static(trace::X_REQUEST_ID),
            sample_new_traces: false,
            grpc: false,
        }
    }

    /// Answers the way a gRPC server does (for tonic's `Server::layer`): the
    /// layer's own answers are `200` responses with a `grpc-status` of
    /// `DEADLINE_EXCEEDED` (4) at the deadline, `INTERNAL` (13) on a panic and
    /// `INVALID_ARGUMENT` (3) for a refused deadline header, instead of `504`,
    /// `500` and `400`.
    pub fn grpc(mut self) -> Self {
        self.grpc = true;
        self
    }

    /// The headers read for the deadline, in order: the first that is present
    /// and readable gives it.
    pub fn deadline_headers(mut self, headers: impl IntoIterator<Item = DeadlineHeader>) -> Self {
        self.deadline_headers = headers.into_iter().collect();
        self
    }

    /// Also reads Envoy's `x-envoy-expected-rq-timeout-ms`, after the others.
    pub fn envoy(mut self) -> Self {
        self.deadline_headers
            .push(DeadlineHeader::millis(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS));
        self
    }

    /// The longest deadline a caller is granted; a longer one is clamped to it.
    pub fn max_deadline(mut self, max: Duration) -> Self {
        self.max_deadline = max;
        self
    }

    /// The route's own limit: the request's deadline is the earlier of the
    /// caller's and this, and this alone when the caller sends none.
    pub fn route_limit(mut self, limit: Duration) -> Self {
        self.route_limit = Some(limit);
        self
    }

    /// What a bad deadline header gets.
    pub fn bad_header(mut self, policy: BadHeader) -> Self {
        self.bad_header = policy;
        self
    }

    /// The header of the request id.
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.request_id_header = name;
        self
    }

    /// Whether a trace the server starts (no or no valid trace header came)
    /// is sampled.
    pub fn sample_new_traces(mut self, sampled: bool) -> Self {
        self.sample_new_traces = sampled;
        self
    }

    /// The layer.
    pub fn layer(self) -> InboundLayer {
        InboundLayer {
            config: Arc::new(self),
            stats: Arc::default(),
        }
    }

    /// The context of a request with these headers, as the layer makes it: its
    /// deadline (from the first readable deadline header, within the limits),
    /// its trace context and request id as values; with the guard that
    /// cancels it. For servers that are not tower services; the layer also
    /// enforces the deadline and cancels the context when the client goes away,
    /// which a caller of this does itself.
    ///
    /// Fails only under [`BadHeader::Reject`], for a bad deadline header.
    pub fn context(
        &self,
        headers: &HeaderMap,
    ) -> Result<(Context, CancelGuard), BadDeadlineHeader> {
        let (ctx, guard, _) = self.read(headers)?.into_context();
        Ok((ctx, guard))
    }

    /// What a request's headers say: its deadline (after the limits), its
    /// trace context and request id, and the bad deadline headers seen.
    fn read(&self, headers: &HeaderMap) -> Result<Incoming, BadDeadlineHeader> {
        let found = Found::of(self, headers);
        let mut deadline = None;
        let mut bad = 0;
        for (i, header) in self.deadline_headers.iter().enumerate() {
            let decoded = match found.deadline(i, header, headers) {
                None => continue,
                Some(Ok(value)) => header.decode(value, self.max_deadline),
                Some(Err(())) => Err("the header is sent more than once".to_string()),
            };
            match decoded {
                Ok(d) => {
                    deadline = Some(d);
                    break;
                }
                Err(reason) => {
                    tracing::debug!(header = header.name(), %reason, "bad deadline header");
                    if self.bad_header == BadHeader::Reject {
                        return Err(BadDeadlineHeader {
                            header: header.name().to_string(),
                            reason,
                        });
                    }
                    bad += 1;
                }
            }
        }
        let deadline = match (deadline, self.route_limit) {
            (Some(d), Some(limit)) => Some(d.min(limit)),
            (d, limit) => d.or(limit),
        };
        Ok(Incoming {
            deadline,
            trace: self.trace_of(&found, headers),
            request_id: found
                .request_id
                .and_then(|v| v.to_str().ok())
                .and_then(|v| RequestId::parse(v).ok())
                .unwrap_or_else(RequestId::new_random),
            bad,
        })
    }

    /// The trace context of the request: `traceparent` (with `tracestate`),
    /// else `b3`, else the `X-B3-*` headers, else a new trace. A bad header
    /// starts a new trace; it never fails the request.
    fn trace_of(&self, found: &Found<'_>, headers: &HeaderMap) -> TraceContext {
        // Twice is as bad as garbage: the trace restarts.
        if let Some(Ok(parent)) = found.traceparent {
            // Decoded from the bytes as they are: a version 00 value that decodes
            // is visible ASCII; what a later version adds must be too.
            let decoded = decode_traceparent_bytes(parent.as_bytes())
                .ok()
                .filter(|_| parent.len() <= TRACEPARENT_LEN || parent.to_str().is_ok());
            if let Some(mut ctx) = decoded {
                // Looked up only when present: in order, every field.
                if found.tracestate {
                    let joined = headers
                        .get_all(&TRACESTATE_NAME)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect::<Vec<_>>()
                        .join(",");
                    if let Ok(state) = decode_tracestate(&joined) {
                        ctx = ctx.with_state(state);
                    }
                }
                return ctx;
            }
        }
        if let Some(Ok(single)) = found.b3.map(|v| v.and_then(|v| v.to_str().map_err(|_| ()))) {
            if let Ok(b3) = decode_b3(single) {
                return b3.into_trace_context();
            }
        }
        let pairs = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        if let Ok(Some(b3)) = decode_b3_multi(pairs) {
            return b3.into_trace_context();
        }
        TraceContext::new_root(self.new_flags())
    }

    fn new_flags(&self) -> TraceFlags {
        if self.sample_new_traces {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::NOT_SAMPLED
        }
    }
}

/// A header's value as the inbound layer reads it: `None` if it is absent,
/// `Some(Err(()))` if it is sent more than once.
type One<'a> = Option<Result<&'a HeaderValue, ()>>;

/// A map of at most this many values is read in one pass, comparing names;
/// a larger one is looked up by name. Hashing a name for a lookup costs more
/// than comparing it with a few: one lookup of each of the five or so names
/// the layer reads costs about what one pass over some 40 values does.
const SCAN_LIMIT: usize = 32;
/// The deadline headers one pass can read; a longer list is looked up.
const SCANNED_DEADLINES: usize = 4;

/// The headers a request's context is made from.
struct Found<'a> {
    /// Whether the deadline headers were read in the pass (else they are
    /// looked up when asked for).
    scanned: bool,
    deadlines: [One<'a>; SCANNED_DEADLINES],
    traceparent: One<'a>,
    /// Whether a `tracestate` is present (read later, by lookup, in order).
    tracestate: bool,
    b3: One<'a>,
    /// The first value: a repeated request id is not refused.
    request_id: Option<&'a HeaderValue>,
}

impl<'a> Found<'a> {
    #[inline]
    fn of(config: &Inbound, headers: &'a HeaderMap) -> Found<'a> {
        if headers.len() <= SCAN_LIMIT && config.deadline_headers.len() <= SCANNED_DEADLINES {
            Found::scan(config, headers)
        } else {
            Found {
                scanned: false,
                deadlines: [None; SCANNED_DEADLINES],
                traceparent: only(headers, &TRACEPARENT_NAME),
                tracestate: true,
                b3: only(headers, &B3_NAME),
                request_id: headers.get(&config.request_id_header),
            }
        }
    }

    /// One pass over `headers`. A name's length rules out most names before
    /// it is compared.
    fn scan(config: &Inbound, headers: &'a HeaderMap) -> Found<'a> {
        let bit = |name: &str| 1u64 << (name.len() % 64);
        let request_id = config.request_id_header.as_str();
        // The names of the deadline headers, once; "" (no header's name) for
        // a slot the list does not fill.
        let mut deadline_names = [""; SCANNED_DEADLINES];
        let mut lengths =
            bit(trace::TRACEPARENT) | bit(trace::TRACESTATE) | bit(trace::B3) | bit(request_id);
        for (slot, header) in deadline_names.iter_mut().zip(&config.deadline_headers) {
            *slot = header.name();
            lengths |= bit(slot);
        }
        let mut found = Found {
            scanned: true,
            deadlines: [None; SCANNED_DEADLINES],
            traceparent: None,
            tracestate: false,
            b3: None,
            request_id: None,
        };
        let see = |slot: &mut One<'a>, value| {
            *slot = Some(match slot {
                None => Ok(value),
                Some(_) => Err(()),
            });
        };
        for (name, value) in headers {
            let name = name.as_str();
            if lengths & bit(name) == 0 {
                continue;
            }
            // Lengths first: most names are ruled out without a comparison of
            // their bytes.
            let is = |wanted: &str| name.len() == wanted.len() && name == wanted;
            for (slot, wanted) in found.deadlines.iter_mut().zip(deadline_names) {
                if is(wanted) {
                    see(slot, value);
                }
            }
            if is(trace::TRACEPARENT) {
                see(&mut found.traceparent, value);
            } else if is(trace::TRACESTATE) {
                found.tracestate = true;
            } else if is(trace::B3) {
                see(&mut found.b3, value);
            }
            if found.request_id.is_none() && is(request_id) {
                found.request_id = Some(value);
            }
        }
        found
    }

    /// The value of `header`, the `i`th deadline header.
    #[inline]
    fn deadline(&self, i: usize, header: &DeadlineHeader, headers: &'a HeaderMap) -> One<'a> {
        if self.scanned {
            self.deadlines.get(i).copied().flatten()
        } else {
            only(headers, header.header_name())
        }
    }
}

/// The one value of header `name`: `None` if it is absent, `Some(Err(()))` if
/// it is sent more than once.
#[inline]
fn only<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<Result<&'a HeaderValue, ()>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    Some(match values.next() {
        None => Ok(first),
        Some(_) => Err(()),
    })
}

/// What the headers of one request say.
struct Incoming {
    deadline: Option<Duration>,
    trace: TraceContext,
    request_id: RequestId,
    bad: u64,
}

/// A deadline header refused under [`BadHeader::Reject`]: which, and why.
#[derive(Clone, Debug)]
pub struct BadDeadlineHeader {
    header: String,
    reason: String,
}

impl BadDeadlineHeader {
    /// The header's name.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// What was wrong with its value.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for BadDeadlineHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad deadline header {}: {}", self.header, self.reason)
    }
}

impl std::error::Error for BadDeadlineHeader {}

impl Incoming {
    /// The request's context, its guard, and its deadline on the
    /// [`TokioClock`] axis.
    fn into_context(self) -> (Context, CancelGuard, Option<Timestamp>) {
        // On the recent clock, which lags the exact one by about a millisecond
        // and never leads it: the deadline is never later than the caller's.
        let deadline = self.deadline.map(|d| TokioClock.recent().saturating_add(d));
        #[allow(clippy::disallowed_methods)] // the inbound edge is where a request's context begins
        let base = Context::background().with_values((self.trace, self.request_id));
        let (ctx, guard) = match deadline {
            Some(at) => base.with_deadline(at),
            None => base.with_cancel(),
        };
        (ctx, guard, deadline)
    }
}

/// The counters of an [`InboundLayer`], shared by every service it made.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    bad_headers: AtomicU64,
    rejected: AtomicU64,
    deadline_exceeded: AtomicU64,
    panics: AtomicU64,
    abandoned: AtomicU64,
}

/// What an [`InboundLayer`] has seen, read by [`InboundLayer::snapshot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundSnapshot {
    /// Requests received.
    pub requests: u64,
    /// Deadline headers that could not be read (ignored or refused).
    pub bad_headers: u64,
    /// Requests answered `400` for a bad deadline header.
    pub rejected: u64,
    /// Requests answered `504` at their deadline.
    pub deadline_exceeded: u64,
    /// Requests whose handler panicked, answered `500`.
    pub panics: u64,
    /// Requests whose client went away before the answer (their context was
    /// cancelled).
    pub abandoned: u64,
}

/// Makes each request's [`Context`]; made by [`Inbound::layer`].
#[derive(Clone, Debug)]
pub struct InboundLayer {
    config: Arc<Inbound>,
    stats: Arc<Stats>,
}

impl InboundLayer {
    /// The counters so far, over every service the layer made.
    pub fn snapshot(&self) -> InboundSnapshot {
        let s = &self.stats;
        InboundSnapshot {
            requests: s.requests.load(Ordering::Relaxed),
            bad_headers: s.bad_headers.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            deadline_exceeded: s.deadline_exceeded.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
            abandoned: s.abandoned.load(Ordering::Relaxed),
        }
    }
}

impl<S> Layer<S> for InboundLayer {
    type Service = InboundService<S>;

    fn layer(&self, inner: S) -> InboundService<S> {
        InboundService {
            inner,
            config: self.config.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// The service made by [`InboundLayer`].
#[derive(Clone, Debug)]
pub struct InboundService<S> {
    inner: S,
    config: Arc<Inbound>,
    stats: Arc<Stats>,
}

impl<S, B, RB> Service<Request<B>> for InboundService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Default,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = InboundFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let incoming = match self.config.read(request.headers()) {
            Ok(incoming) => incoming,
            Err(bad) => {
                self.stats.bad_headers.fetch_add(1, Ordering::Relaxed);
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(header = %bad.header, reason = %bad.reason, "request refused: bad deadline header");
                return InboundFuture::answer(StatusCode::BAD_REQUEST, self.config.grpc);
            }
        };
        if incoming.bad > 0 {
            self.stats
                .bad_headers
                .fetch_add(incoming.bad, Ordering::Relaxed);
        }
        let span = tracing::debug_span!(
            "palisade.request",
            request_id = %incoming.request_id.as_str(),
            trace_id = %incoming.trace.trace_id(),
            parent_span_id = %incoming.trace.span_id(),
            deadline_ms = tracing::field::Empty,
        );
        if let Some(d) = incoming.deadline {
            span.record("deadline_ms", d.as_millis() as u64);
        }
        #[cfg(feature = "opentelemetry")]
        otel::adopt(&span, &incoming.trace);
        let (ctx, guard, deadline) = incoming.into_context();
        request.extensions_mut().insert(ctx);
        let inner = &mut self.inner;
        let made = {
            let _entered = span.enter();
            catch_unwind(AssertUnwindSafe(|| inner.call(request)))
        };
        match made {
            Ok(fut) => InboundFuture {
                state: State::Running {
                    fut,
                    guard: RequestGuard {
                        guard: Some(guard),
                        stats: self.stats.clone(),
                    },
                    deadline,
                    timer: None,
                    span,
                    grpc: self.config.grpc,
                },
                body: std::marker::PhantomData,
            },
            Err(_) => {
                self.stats.panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(parent: &span, "handler panicked");
                InboundFuture::answer(StatusCode::INTERNAL_SERVER_ERROR, self.config.grpc)
            }
        }
    }
}

/// Cancels a request's context when its answer is dropped before it is ready
/// (the client went away), and when it is done.
struct RequestGuard {
    guard: Option<CancelGuard>,
    stats: Arc<Stats>,
}

impl RequestGuard {
    /// The request is answered: its context ends, plainly cancelled.
    fn done(&mut self) {
        drop(self.guard.take());
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            self.stats.abandoned.fetch_add(1, Ordering::Relaxed);
            guard.cancel_with("the client went away before the answer");
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`InboundService`] call.
    pub struct InboundFuture<F, RB> {
        #[pin]
        state: State<F>,
        body: std::marker::PhantomData<fn() -> RB>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            fut: F,
            guard: RequestGuard,
            deadline: Option<Timestamp>,
            #[pin]
            timer: Option<<TokioClock as Clock>::Sleep>,
            span: tracing::Span,
            grpc: bool,
        },
        Answer {
            status: StatusCode,
            grpc: bool,
        },
        Done,
    }
}

impl<F, RB: Default> InboundFuture<F, RB> {
    fn answer(status: StatusCode, grpc: bool) -> Self {
        InboundFuture {
            state: State::Answer { status, grpc },
            body: std::marker::PhantomData,
        }
    }
}

/// The layer's own answer: `status`, or its gRPC form.
fn response<RB: Default>(status: StatusCode, grpc: bool) -> Response<RB> {
    let mut response = Response::new(RB::default());
    if !grpc {
        *response.status_mut() = status;
        return response;
    }
    let (code, message) = match status {
        StatusCode::GATEWAY_TIMEOUT => ("4", "deadline exceeded"),
        StatusCode::BAD_REQUEST => ("3", "bad deadline header"),
        _ => ("13", "the handler panicked"),
    };
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static(code));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

impl<F, RB, E> Future for InboundFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let (status, outcome) = match this.state.as_mut().project() {
            StateProj::Answer { status, grpc } => {
                let answer = response(*status, *grpc);
                this.state.set(State::Done);
                return Poll::Ready(Ok(answer));
            }
            StateProj::Done => panic!("an inbound future polled after it completed"),
            StateProj::Running {
                fut,
                guard,
                deadline,
                mut timer,
                span,
                grpc,
            } => {
                let grpc = *grpc;
                let _entered = span.enter();
                match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
                    Ok(Poll::Ready(result)) => {
                        guard.done();
                        (None, Some(result))
                    }
                    Ok(Poll::Pending) => {
                        let Some(at) = *deadline else {
                            return Poll::Pending;
                        };
                        if timer.is_none() {
                            timer.set(Some(TokioClock.sleep_until(at)));
                        }
                        match timer.as_pin_mut().map(|t| t.poll(cx)) {
                            Some(Poll::Ready(())) => {
                                guard
                                    .stats
                                    .deadline_exceeded
                                    .fetch_add(1, Ordering::Relaxed);
                                if let Some(g) = guard.guard.take() {
                                    g.cancel_with_cause(Cause::deadline_exceeded());
                                }
                                tracing::debug!("request past its deadline: 504");
                                (Some((StatusCode::GATEWAY_TIMEOUT, grpc)), None)
                            }
                            _ => return Poll::Pending,
                        }
                    }
                    Err(_) => {
                        guard.stats.panics.fetch_add(1, Ordering::Relaxed);
                        guard.done();
                        tracing::error!("handler panicked");
                        (Some((StatusCode::INTERNAL_SERVER_ERROR, grpc)), None)
                    }
                }
            }
        };
        // The handler is dropped now, whatever ended it.
        this.state.set(State::Done);
        match (status, outcome) {
            (_, Some(result)) => Poll::Ready(result),
            (Some((status, grpc)), None) => Poll::Ready(Ok(response(status, grpc))),
            (None, None) => unreachable!("a settled request has an answer"),
        }
    }
}

impl<F, RB> fmt::Debug for InboundFuture<F, RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundFuture").finish_non_exhaustive()
    }
}

/// Which trace headers an outbound request carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceFormat {
    /// W3C `traceparent` and `tracestate` (the default: what OpenTelemetry
    /// speaks).
    #[default]
    W3c,
    /// The single `b3` header.
    B3,
    /// Both.
    Both,
    /// None.
    None,
}

/// What a leaving request carries; builds an [`OutboundLayer`], or writes the
/// headers itself ([`inject`](Self::inject)).
///
/// | setting | default | why |
/// | --- | --- | --- |
/// | [`deadline_header`](Self::deadline_header) | `x-request-timeout-ms` | the HTTP form; `grpc-timeout` for gRPC |
/// | [`margin`](Self::margin) | 5 ms | the network's share of the budget: the callee stops before the caller gives up |
/// | [`min_budget`](Self::min_budget) | 1 ms | below it, the callee could not do the work: the request is not sent |
/// | [`trace_format`](Self::trace_format) | W3C | see [`TraceFormat`] |
/// | [`request_id_header`](Self::request_id_header) | `x-request-id` | the common name |
#[derive(Clone, Debug)]
pub struct Outbound {
    deadline_header: Option<DeadlineHeader>,
    margin: Duration,
    min_budget: Duration,
    trace_format: TraceFormat,
    request_id_header: HeaderName,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new()
    }
}

impl Outbound {
    /// The defaults of the table above.
    pub fn new() -> Outbound {
        Outbound {
            deadline_header: Some(DeadlineHeader::millis(X_REQUEST_TIMEOUT_MS)),
            margin: Duration::from_millis(5),
            min_budget: Duration::from_millis(1),
            trace_format: TraceFormat::W3c,
            request_id_header: HeaderName::from_static(trace::X_REQUEST_ID),
        }
    }

    /// The header the remaining budget is written to; `None` writes none.
    pub fn deadline_header(mut self, header: Option<DeadlineHeader>) -> Self {
        self.deadline_header = header;
        self
    }

    /// What is taken off the remaining time for the network.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The least budget (after the margin) a request is sent with.
    pub fn min_budget(mut self, min: Duration) -> Self {
        self.min_budget = min;
        self
    }

    /// Which trace headers are written.
    pub fn trace_format(mut self, format: TraceFormat) -> Self {
        self.trace_format = format;
        self
    }

    /// The header of the request id.
    pub fn request_id_header(mut self, name: HeaderName) -> Self {
        self.request_id_header = name;
        self
    }

    /// The layer.
    pub fn layer(self) -> OutboundLayer {
        OutboundLayer {
            config: Arc::new(self),
        }
    }

    /// Writes what `ctx` carries into `headers`: the budget (the time remaining
    /// minus the margin), the trace context of a new span of the context's
    /// trace, and the request id. Headers of those names already there are
    /// replaced. A context without a deadline writes no budget; without a
    /// trace context, no trace headers.
    ///
    /// Fails, writing nothing, when the context has ended or its budget is
    /// below [`min_budget`](Self::min_budget): such a request should not be
    /// sent.
    pub fn inject(&self, ctx: &Context, headers: &mut HeaderMap) -> Result<(), BudgetExhausted> {
        // `is_cancelled` is a load or two; the cause is made only for an end.
        if ctx.is_cancelled() {
            if let Some(cause) = ctx.cause() {
                return Err(BudgetExhausted {
                    remaining: Duration::ZERO,
                    cause: Some(cause),
                });
            }
        }
        let budget = match ctx.remaining() {
            Some(remaining) => {
                let budget = remaining.saturating_sub(self.margin);
                if budget < self.min_budget {
                    return Err(BudgetExhausted {
                        remaining,
                        cause: None,
                    });
                }
                Some(budget)
            }
            None => None,
        };
        if let (Some(budget), Some(header)) = (budget, &self.deadline_header) {
            let value = match header {
                DeadlineHeader::GrpcTimeout => {
                    HeaderValue::try_from(encode_grpc_timeout(budget)).ok()
                }
                // Whole milliseconds, rounded up, written without a string.
                // (The seconds' milliseconds are whole: only the rest rounds.)
                DeadlineHeader::Millis(_) => Some(millis_value(
                    budget
                        .as_secs()
                        .saturating_mul(1000)
                        .saturating_add(u64::from(budget.subsec_nanos().div_ceil(1_000_000))),
                )),
            };
            if let Some(value) = value {
                headers.insert(header.header_name(), value);
            }
        }
        if let Some(parent) = TraceContext::from_context(ctx) {
            #[cfg(feature = "opentelemetry")]
            let span = otel::current(parent).unwrap_or_else(|| parent.child());
            #[cfg(not(feature = "opentelemetry"))]
            let span = parent.child();
            if matches!(self.trace_format, TraceFormat::W3c | TraceFormat::Both) {
                // Written into a buffer on the stack, copied into the value once.
                insert_bytes(headers, &TRACEPARENT_NAME, &encode_traceparent_bytes(&span));
                if !span.state().is_empty() {
                    insert_bytes(headers, &TRACESTATE_NAME, span.state().as_str().as_bytes());
                }
            }
            if matches!(self.trace_format, TraceFormat::B3 | TraceFormat::Both) {
                insert(headers, &B3_NAME, encode_b3(&span));
            }
        }
        if let Some(id) = RequestId::from_context(ctx) {
            insert_bytes(headers, &self.request_id_header, id.as_bytes());
        }
        Ok(())
    }
}

/// Writes a header from bytes the codecs made (always visible ASCII), copied
/// into the value.
#[inline]
fn insert_bytes(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        // By reference: the name is cloned only if the map does not hold it.
        headers.insert(name, value);
    }
}

/// The header value of `millis`, its decimal digits written on the stack and
/// copied into the value once.
fn millis_value(millis: u64) -> HeaderValue {
    // Two digits a division, from a table of the hundred pairs.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = millis;
    while rest >= 100 {
        // Below 100: fits.
        let pair = usize::from((rest % 100) as u8) * 2;
        rest /= 100;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if rest >= 10 {
        let pair = usize::from(rest as u8) * 2;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        start -= 1;
        digits[start] = b'0' + rest as u8;
    }
    HeaderValue::from_bytes(&digits[start..]).unwrap_or_else(|_| HeaderValue::from(millis))
}

/// Writes a header from a value the codecs made (always visible ASCII).
fn insert(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name.clone(), value);
    }
}

/// A request not sent: its context has ended, or too little of its budget is
/// left to be worth sending.
#[derive(Clone, Debug)]
pub struct BudgetExhausted {
    remaining: Duration,
    cause: Option<Cause>,
}

impl BudgetExhausted {
    /// The time that remained when the request was to be sent.
    pub fn remaining(&self) -> Duration {
        self.remaining
    }

    /// Why the context ended, if it had.
    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_ref()
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "request not sent: {cause}"),
            None => write!(
                f,
                "request not sent: {:?} of its deadline left, below the minimum budget",
                self.remaining
            ),
        }
    }
}

impl std::error::Error for BudgetExhausted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|c| c as _)
    }
}

/// The error of an [`OutboundService`]: the request was not sent, or the
/// client failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutboundError<E> {
    /// Not sent: see [`BudgetExhausted`].
    Budget(BudgetExhausted),
    /// The inner client's error.
    Service(E),
}

impl<E: fmt::Display> fmt::Display for OutboundError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundError::Budget(b) => b.fmt(f),
            OutboundError::Service(e) => e.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for OutboundError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OutboundError::Budget(b) => Some(b),
            OutboundError::Service(e) => Some(e),
        }
    }
}

/// Writes the budget, trace and request id of each request from the
/// [`Context`] in its extensions; made by [`Outbound::layer`].
#[derive(Clone, Debug)]
pub struct OutboundLayer {
    config: Arc<Outbound>,
}

impl<S> Layer<S> for OutboundLayer {
    type Service = OutboundService<S>;

    fn layer(&self, inner: S) -> OutboundService<S> {
        OutboundService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`OutboundLayer`].
#[derive(Clone, Debug)]
pub struct OutboundService<S> {
    inner: S,
    config: Arc<Outbound>,
}

impl<S, B> Service<Request<B>> for OutboundService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = OutboundError<S::Error>;
    type Future = OutboundFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(OutboundError::Service)
    }

    /// The context is the request's (in its extensions), or else the task's
    /// ([`palisade::context::current`](palisade_context::current)).
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ctx = match request.extensions().get::<Context>() {
            Some(ctx) => ctx.clone(),
            None => palisade_context::current(),
        };
        match self.config.inject(&ctx, request.headers_mut()) {
            Ok(()) => OutboundFuture {
                inner: Some(self.inner.call(request)),
                refused: None,
            },
            Err(budget) => OutboundFuture {
                inner: None,
                refused: Some(budget),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of an [`OutboundService`] call.
    pub struct OutboundFuture<F> {
        #[pin]
        inner: Option<F>,
        refused: Option<BudgetExhausted>,
    }
}

impl<F, T, E> Future for OutboundFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, OutboundError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(budget) = this.refused.take() {
            return Poll::Ready(Err(OutboundError::Budget(budget)));
        }
        match this.inner.as_pin_mut() {
            Some(fut) => fut.poll(cx).map_err(OutboundError::Service),
            None => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for OutboundFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundFuture")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

/// The bridge to OpenTelemetry (the `opentelemetry` feature), through
/// `tracing-opentelemetry`: without its layer installed, both are no-ops.
#[cfg(feature = "opentelemetry")]
mod otel {
    use opentelemetry::trace::TraceContextExt;
    use palisade_context::trace::TraceContext;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// Makes the incoming trace the parent of the request's span, so that the
    /// span OpenTelemetry exports for it joins the caller's trace.
    pub(super) fn adopt(span: &tracing::Span, trace: &TraceContext) {
        if span.is_disabled() {
            return;
        }
        let parent =
            opentelemetry::Context::new().with_remote_span_context(trace.to_span_context(true));
        // Without the layer there is nothing to join: not an error.
        let _ = span.set_parent(parent);
    }

    /// The current span as OpenTelemetry knows it, if it belongs to `parent`'s
    /// trace: a leaving request then names that span (the attempt's) as its
    /// parent, so that the callee's spans hang under it in the exported trace.
    pub(super) fn current(parent: &TraceContext) -> Option<TraceContext> {
        let current = tracing::Span::current();
        if current.is_disabled() {
            return None;
        }
        let cx = current.context();
        let span = cx.span();
        let ctx = TraceContext::from_span_context(span.span_context())?;
        (ctx.trace_id() == parent.trace_id()).then(|| ctx.with_state(parent.state().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The milliseconds value is the number's decimal digits, at every length.
    #[test]
    fn millis_values_are_the_decimal_digits() {
        let mut n = 1u64;
        let mut values = vec![0, 9, 10, 99, 100, 101, 999, 1000, 1500, u64::MAX];
        while let Some(next) = n.checked_mul(10) {
            values.extend([n - 1, n, n + 1, n * 7 + 3]);
            n = next;
        }
        for value in values {
            assert_eq!(
                millis_value(value).as_bytes(),
                value.to_string().as_bytes(),
                "{value}"
            );
        }
    }

    /// One pass over a small map and lookups in a large one read the same.
    #[test]
    fn a_small_and_a_large_map_are_read_alike() {
        let inbound = Inbound::new();
        let mut headers = HeaderMap::new();
        headers.append("x-request-timeout-ms", "1500".parse().unwrap());
        headers.append("grpc-timeout", "2S".parse().unwrap());
        headers.append("grpc-timeout", "3S".parse().unwrap());
        headers.append("x-request-id", " id-1 ".parse().unwrap());
        headers.append("x-request-id", "id-2".parse().unwrap());
        headers.append(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.append("tracestate", "a=1".parse().unwrap());
        headers.append("tracestate", "b=2".parse().unwrap());
        let small = inbound.read(&headers).unwrap();
        for i in 0..SCAN_LIMIT {
            headers.append(
                HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
        }
        let large = inbound.read(&headers).unwrap();
        for read in [&small, &large] {
            // grpc-timeout twice: bad, so the milliseconds header gives it.
            assert_eq!(read.deadline, Some(Duration::from_millis(1500)));
            assert_eq!(read.bad, 1);
            assert_eq!(read.request_id.as_str(), "id-1");
            assert_eq!(
                read.trace.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(read.trace.state().as_str(), "a=1,b=2");
        }
    }
}
