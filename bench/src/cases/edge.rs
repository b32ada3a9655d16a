//! The edges of a service: a request's headers made into its context, and a
//! context written into a leaving request's headers, next to OpenTelemetry's W3C
//! trace context propagator on the same headers.

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use palisade::Context;
use palisade::edge::{Inbound, Outbound};
use palisade_context::trace::{RequestId, decode_traceparent};
use std::time::Duration;

use super::Gap;
use crate::harness::{Case, Role, bench_sync};

const INBOUND: &str = "inbound: headers to context";
const OUTBOUND: &str = "outbound: context to headers";

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub(super) const GAPS: &[Gap] = &[];

/// An incoming request's headers: a deadline, a request id and a trace.
fn incoming() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-timeout-ms", "1500".parse().unwrap());
    headers.insert("x-request-id", "7f1c2a9e-req".parse().unwrap());
    headers.insert("traceparent", TRACEPARENT.parse().unwrap());
    headers
}

/// A request's context with a deadline, a trace and a request id, and the
/// guard that keeps it.
fn request_context() -> (Context, palisade_context::CancelGuard) {
    Context::background()
        .with_value(decode_traceparent(TRACEPARENT).unwrap())
        .with_value(RequestId::parse("7f1c2a9e-req").unwrap())
        .with_timeout(Duration::from_secs(3600))
}

pub(super) fn cases() -> Vec<Case> {
    let otel_cx = TraceContextPropagator::new().extract(&HeaderExtractor(&incoming()));
    vec![
        Case::new(
            "edge",
            INBOUND,
            "palisade edge::Inbound",
            Role::Palisade,
            bench_sync!(
                (Inbound::new(), incoming()),
                |s| s.0.context(&s.1).map(|(ctx, guard)| {
                    // The request ends: its context goes first, then its guard.
                    let has_deadline = ctx.deadline().is_some();
                    drop(ctx);
                    drop(guard);
                    has_deadline
                }),
                |r: &Result<bool, _>| matches!(r, Ok(true))
            ),
        )
        .key()
        .note("deadline, request id and traceparent read; a context with a deadline, the trace and the id made"),
        Case::new(
            "edge",
            INBOUND,
            "opentelemetry TraceContextPropagator",
            Role::Peer,
            bench_sync!(
                (TraceContextPropagator::new(), incoming()),
                |s| s.0.extract(&HeaderExtractor(&s.1)).span().span_context().is_valid(),
                |r: &bool| *r
            ),
        )
        .key()
        .note("extract: traceparent only, into an OpenTelemetry Context"),
        Case::new(
            "edge",
            OUTBOUND,
            "palisade edge::Outbound",
            Role::Palisade,
            bench_sync!(
                (Outbound::new(), request_context(), HeaderMap::new()),
                |s| s.0.inject(&s.1.0, &mut s.2).is_ok(),
                |r: &bool| *r
            ),
        )
        .key()
        .note("the budget less the margin, a traceparent with a new span id, the request id"),
        Case::new(
            "edge",
            OUTBOUND,
            "opentelemetry TraceContextPropagator",
            Role::Peer,
            bench_sync!(
                (TraceContextPropagator::new(), otel_cx, HeaderMap::new()),
                |s| {
                    s.0.inject_context(&s.1, &mut HeaderInjector(&mut s.2));
                    s.2.contains_key("traceparent")
                },
                |r: &bool| *r
            ),
        )
        .key()
        .note("inject: traceparent (and an empty tracestate), the span id as extracted"),
    ]
}
