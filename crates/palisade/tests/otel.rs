//! With the `opentelemetry` feature and `tracing-opentelemetry` installed, the
//! ids on the wire are OpenTelemetry's: an incoming trace is the parent of the
//! request's exported span, and a leaving request names the exported attempt
//! span as its parent.
#![allow(clippy::disallowed_methods)] // a test starts its own contexts and waits in virtual time
#![cfg(all(feature = "opentelemetry", feature = "context"))]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, Request, Response};
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use palisade::context::trace::decode_traceparent;
use palisade::edge::{Inbound, Outbound};
use palisade::{Context, Pipeline};
use tower::{Layer, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt;

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "current_thread")]
async fn the_wire_carries_the_ids_of_the_exported_spans() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let sent = Arc::new(Mutex::new(HeaderMap::new()));
    let record = sent.clone();
    let pipeline = Pipeline::builder("downstream").build().unwrap();
    let handler = service_fn(move |request: Request<()>| {
        let ctx = request.extensions().get::<Context>().cloned().unwrap();
        let record = record.clone();
        let pipeline = pipeline.clone();
        async move {
            // A call downstream: its headers, as the outbound layer writes them.
            pipeline
                .execute(&ctx, |attempt| {
                    let mut headers = HeaderMap::new();
                    Outbound::new().inject(&attempt, &mut headers).unwrap();
                    *record.lock().unwrap() = headers;
                    async { Ok::<_, Infallible>(()) }
                })
                .await
                .unwrap();
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let request = Request::builder()
        .header("traceparent", TRACE)
        .body(())
        .unwrap();
    Inbound::new()
        .layer()
        .layer(handler)
        .oneshot(request)
        .await
        .unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let by_name = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no {name} span in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let request_span = by_name("palisade.request");
    let attempt_span = by_name("palisade.attempt");
    let incoming = decode_traceparent(TRACE).unwrap();
    // The request's span joined the caller's trace, under the caller's span.
    assert_eq!(
        request_span.span_context.trace_id().to_string(),
        incoming.trace_id().to_string()
    );
    assert_eq!(
        request_span.parent_span_id.to_string(),
        incoming.span_id().to_string()
    );
    assert!(request_span.parent_span_is_remote);
    // The leaving request names the exported attempt span as its parent.
    let sent = sent.lock().unwrap();
    let out = decode_traceparent(sent["traceparent"].to_str().unwrap()).unwrap();
    assert_eq!(out.trace_id(), incoming.trace_id());
    assert_eq!(
        out.span_id().to_string(),
        attempt_span.span_context.span_id().to_string()
    );
    assert_eq!(
        attempt_span.span_context.trace_id().to_string(),
        incoming.trace_id().to_string()
    );
}
