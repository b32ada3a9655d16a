//! The inbound and outbound layers on their own, in virtual time: what context a
//! request gets from its headers, what happens at its deadline, on a panic and
//! when its client goes away, and what a leaving request carries.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "tower",
    feature = "http",
    feature = "context",
    feature = "clock"
))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use http::{HeaderMap, Request, Response, StatusCode};
use palisade::Context;
use palisade::clock::{Clock, TokioClock};
use palisade::context::trace::{RequestId, TraceContext, TraceFlags};
use palisade::edge::{BadHeader, DeadlineHeader, Inbound, Outbound, OutboundError, TraceFormat};
use tower::{Layer, Service, ServiceExt, service_fn};

const MS: Duration = Duration::from_millis(1);
const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// What the handler saw of its context.
#[derive(Clone, Debug, Default)]
struct Seen {
    remaining: Option<Duration>,
    trace: Option<TraceContext>,
    request_id: Option<String>,
}

/// Sends a request with `headers` through an inbound layer made by `inbound`,
/// to a handler that answers at once; returns what it saw and the status.
async fn through(inbound: Inbound, headers: &[(&str, &str)]) -> (Option<Seen>, StatusCode) {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let handler = service_fn(move |request: Request<()>| {
        let ctx = request.extensions().get::<Context>().unwrap();
        *record.lock().unwrap() = Some(Seen {
            remaining: ctx.remaining(),
            trace: TraceContext::from_context(ctx).cloned(),
            request_id: RequestId::from_context(ctx).map(|id| id.as_str().to_string()),
        });
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let mut request = Request::builder();
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = inbound
        .layer()
        .layer(handler)
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, response.status())
}

#[tokio::test(start_paused = true)]
async fn the_deadline_comes_from_the_first_readable_header_within_the_limits() {
    let remaining = |seen: Option<Seen>| seen.unwrap().remaining;
    let (seen, _) = through(
        Inbound::new(),
        &[("grpc-timeout", "150m"), ("x-request-timeout-ms", "900")],
    )
    .await;
    assert_eq!(remaining(seen), Some(150 * MS), "grpc-timeout comes first");
    let (seen, _) = through(Inbound::new(), &[("x-request-timeout-ms", "900")]).await;
    assert_eq!(remaining(seen), Some(900 * MS));
    // Clamped to the server's maximum, and to the route's own limit.
    let (seen, _) = through(
        Inbound::new().max_deadline(Duration::from_secs(2)),
        &[("x-request-timeout-ms", "999999")],
    )
    .await;
    assert_eq!(remaining(seen), Some(Duration::from_secs(2)));
    let (seen, _) = through(
        Inbound::new().route_limit(100 * MS),
        &[("x-request-timeout-ms", "900")],
    )
    .await;
    assert_eq!(remaining(seen), Some(100 * MS));
    let (seen, _) = through(Inbound::new().route_limit(100 * MS), &[]).await;
    assert_eq!(remaining(seen), Some(100 * MS), "the route's limit alone");
    let (seen, _) = through(Inbound::new(), &[]).await;
    assert_eq!(remaining(seen), None, "no header, no limit: no deadline");
    // Envoy's header only when asked for.
    let envoy = [("x-envoy-expected-rq-timeout-ms", "300")];
    assert_eq!(remaining(through(Inbound::new(), &envoy).await.0), None);
    assert_eq!(
        remaining(through(Inbound::new().envoy(), &envoy).await.0),
        Some(300 * MS)
    );
    let only_grpc = Inbound::new().deadline_headers([DeadlineHeader::GrpcTimeout]);
    assert_eq!(
        remaining(
            through(only_grpc, &[("x-request-timeout-ms", "900")])
                .await
                .0
        ),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_deadline_header_is_skipped_and_counted_or_refused() {
    for bad in ["soon", "-5", "99999999999999999999999", "1.5", ""] {
        let layer = Inbound::new().layer();
        let handler = service_fn(|request: Request<()>| {
            let remaining = request.extensions().get::<Context>().unwrap().remaining();
            async move { Ok::<_, Infallible>(Response::new(format!("{remaining:?}"))) }
        });
        let request = Request::builder()
            .header("grpc-timeout", bad)
            .header("x-request-timeout-ms", "70")
            .body(())
            .unwrap();
        let response = layer.layer(handler).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{bad:?}");
        assert_eq!(
            response.body(),
            "Some(70ms)",
            "{bad:?}: the next header is read"
        );
        assert_eq!(layer.snapshot().bad_headers, 1, "{bad:?}");
    }
    // Sent twice: bad too.
    let (seen, status) = through(
        Inbound::new(),
        &[
            ("x-request-timeout-ms", "70"),
            ("x-request-timeout-ms", "80"),
        ],
    )
    .await;
    assert_eq!((seen.unwrap().remaining, status), (None, StatusCode::OK));

    // Refused: 400, and the handler is never called.
    let called = Arc::new(AtomicBool::new(false));
    let flag = called.clone();
    let layer = Inbound::new().bad_header(BadHeader::Reject).layer();
    let handler = service_fn(move |_: Request<()>| {
        flag.store(true, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let request = Request::builder()
        .header("grpc-timeout", "soon")
        .body(())
        .unwrap();
    let response = layer.layer(handler).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!called.load(Ordering::SeqCst));
    let s = layer.snapshot();
    assert_eq!((s.requests, s.bad_headers, s.rejected), (1, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_request_id_and_the_trace_come_from_the_headers_or_are_made() {
    let (seen, _) = through(
        Inbound::new(),
        &[
            ("traceparent", TRACE),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-request-id", "req-7"),
        ],
    )
    .await;
    let seen = seen.unwrap();
    let trace = seen.trace.unwrap();
    assert_eq!(
        trace.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(trace.span_id().to_string(), "00f067aa0ba902b7");
    assert!(trace.flags().is_sampled());
    assert_eq!(trace.state().get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(seen.request_id.as_deref(), Some("req-7"));

    // B3 when there is no traceparent.
    let (seen, _) = through(
        Inbound::new(),
        &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
    )
    .await;
    let trace = seen.unwrap().trace.unwrap();
    assert_eq!(
        trace.trace_id().to_string(),
        "80f198ee56343ba864fe8b2a57d3eff7"
    );

    // A bad traceparent starts a new trace, not sampled; a bad request id is
    // replaced by a new one. Neither fails the request.
    let (seen, status) = through(
        Inbound::new(),
        &[
            ("traceparent", "00-zz-yy-01"),
            ("x-request-id", "has spaces"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen.unwrap();
    let trace = seen.trace.unwrap();
    assert_ne!(
        trace.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert!(!trace.flags().is_sampled());
    let id = seen.request_id.unwrap();
    assert_ne!(id, "has spaces");
    assert!(RequestId::parse(&id).is_ok());
    let (seen, _) = through(Inbound::new().sample_new_traces(true), &[]).await;
    assert!(seen.unwrap().trace.unwrap().flags().is_sampled());
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_deadline_is_answered_504_and_its_handler_dropped() {
    let dropped = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(std::sync::Mutex::new(None));
    let (flag, seen) = (dropped.clone(), ended.clone());
    let handler = service_fn(move |request: Request<()>| {
        let ctx = request.extensions().get::<Context>().unwrap().clone();
        let guard = DropFlag(flag.clone());
        let seen = seen.clone();
        tokio::spawn(async move {
            ctx.cancelled().await;
            *seen.lock().unwrap() = ctx.cause();
        });
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let layer = Inbound::new().layer();
    let request = Request::builder()
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    let started = TokioClock.now();
    let response = layer.layer(handler).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        TokioClock.now().saturating_duration_since(started),
        100 * MS
    );
    assert!(dropped.load(Ordering::SeqCst), "the handler is dropped");
    tokio::task::yield_now().await;
    assert!(
        ended
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .is_deadline_exceeded()
    );
    assert_eq!(layer.snapshot().deadline_exceeded, 1);
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_is_answered_500_whether_it_panics_in_its_call_or_its_future() {
    let layer = Inbound::new().layer();
    let in_future = service_fn(|_: Request<()>| async {
        panic!("in the future");
        #[allow(unreachable_code)]
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let response = layer
        .layer(in_future)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let in_call = service_fn(
        |_: Request<()>| -> std::future::Ready<Result<Response<String>, Infallible>> {
            panic!("in the call")
        },
    );
    let response = layer
        .layer(in_call)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(layer.snapshot().panics, 2);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_goes_away_cancels_the_requests_context() {
    let ctx_seen = Arc::new(std::sync::Mutex::new(None::<Context>));
    let keep = ctx_seen.clone();
    let handler = service_fn(move |request: Request<()>| {
        *keep.lock().unwrap() = request.extensions().get::<Context>().cloned();
        std::future::pending::<Result<Response<String>, Infallible>>()
    });
    let layer = Inbound::new().layer();
    let mut service = layer.layer(handler);
    let mut answer = Box::pin(service.call(Request::new(())));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(matches!(answer.as_mut().poll(&mut cx), Poll::Pending));
    let ctx = ctx_seen.lock().unwrap().clone().unwrap();
    assert!(!ctx.is_cancelled());
    drop(answer);
    let cause = ctx.cause().unwrap();
    assert!(cause.is_canceled());
    assert!(
        cause.to_string().contains("the client went away"),
        "{cause}"
    );
    assert_eq!(layer.snapshot().abandoned, 1);

    // An answered request's context ends too (work it left behind stops), but
    // the request is not counted as abandoned.
    let answered = Arc::new(std::sync::Mutex::new(None::<Context>));
    let keep = answered.clone();
    let handler = service_fn(move |request: Request<()>| {
        *keep.lock().unwrap() = request.extensions().get::<Context>().cloned();
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    });
    let layer = Inbound::new().layer();
    layer
        .layer(handler)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(answered.lock().unwrap().as_ref().unwrap().is_cancelled());
    assert_eq!(layer.snapshot().abandoned, 0);
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test(start_paused = true)]
async fn a_leaving_request_carries_the_budget_less_the_margin_the_trace_and_the_id() {
    let parent = palisade::context::trace::decode_traceparent(TRACE).unwrap();
    let (ctx, _guard) = Context::background()
        .with_value(parent.clone())
        .with_value(RequestId::parse("req-9").unwrap())
        .with_timeout(300 * MS);
    let mut headers = HeaderMap::new();
    Outbound::new().inject(&ctx, &mut headers).unwrap();
    assert_eq!(
        header(&headers, "x-request-timeout-ms").as_deref(),
        Some("295")
    );
    assert_eq!(header(&headers, "x-request-id").as_deref(), Some("req-9"));
    let sent =
        palisade::context::trace::decode_traceparent(&header(&headers, "traceparent").unwrap())
            .unwrap();
    assert_eq!(sent.trace_id(), parent.trace_id());
    assert_ne!(sent.span_id(), parent.span_id(), "a new span for the call");
    assert_eq!(sent.flags(), TraceFlags::SAMPLED);
    assert_eq!(header(&headers, "b3"), None);

    // gRPC form, B3 as well, another margin.
    let mut headers = HeaderMap::new();
    Outbound::new()
        .deadline_header(Some(DeadlineHeader::GrpcTimeout))
        .margin(50 * MS)
        .trace_format(TraceFormat::Both)
        .inject(&ctx, &mut headers)
        .unwrap();
    assert_eq!(header(&headers, "grpc-timeout").as_deref(), Some("250000u"));
    assert!(
        header(&headers, "b3")
            .unwrap()
            .starts_with("4bf92f3577b34da6a3ce929d0e0e4736-")
    );
    assert!(header(&headers, "traceparent").is_some());

    // No deadline, no trace: nothing but the request id... and nothing at all.
    let mut headers = HeaderMap::new();
    Outbound::new()
        .inject(&Context::background(), &mut headers)
        .unwrap();
    assert!(headers.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_request_with_too_little_budget_is_not_sent() {
    let calls = Arc::new(AtomicU32::new(0));
    let count = calls.clone();
    let client = service_fn(move |_: Request<()>| {
        count.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(())) }
    });
    let mut client = Outbound::new().layer().layer(client);
    // 5 ms left is all margin: below the 1 ms minimum.
    let (ctx, _guard) = Context::background().with_timeout(5 * MS);
    let mut request = Request::new(());
    request.extensions_mut().insert(ctx.clone());
    let e = client
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    let OutboundError::Budget(budget) = e else {
        panic!("not a budget error: {e}");
    };
    assert_eq!(budget.remaining(), 5 * MS);
    assert!(budget.cause().is_none());
    // An ended context: not sent either, with its cause.
    tokio::time::advance(10 * MS).await;
    let mut request = Request::new(());
    request.extensions_mut().insert(ctx);
    let e = client
        .ready()
        .await
        .unwrap()
        .call(request)
        .await
        .unwrap_err();
    let OutboundError::Budget(budget) = e else {
        panic!("not a budget error: {e}");
    };
    assert!(budget.cause().unwrap().is_deadline_exceeded());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // With enough budget it is sent.
    let (ctx, _guard) = Context::background().with_timeout(50 * MS);
    let mut request = Request::new(());
    request.extensions_mut().insert(ctx);
    client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn in_grpc_form_the_layers_answers_are_grpc_statuses() {
    let grpc_status = |response: &Response<String>| {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        response.headers()["grpc-status"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let layer = Inbound::new().grpc().layer();
    let hanging =
        service_fn(|_: Request<()>| std::future::pending::<Result<Response<String>, Infallible>>());
    let request = Request::builder()
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    let response = layer.layer(hanging).oneshot(request).await.unwrap();
    assert_eq!(grpc_status(&response), "4", "DEADLINE_EXCEEDED");
    let panicking = service_fn(
        |_: Request<()>| -> std::future::Ready<Result<Response<String>, Infallible>> {
            panic!("in the call")
        },
    );
    let response = layer
        .layer(panicking)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(grpc_status(&response), "13", "INTERNAL");
    let layer = Inbound::new().grpc().bad_header(BadHeader::Reject).layer();
    let handler =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let request = Request::builder()
        .header("grpc-timeout", "soon")
        .body(())
        .unwrap();
    let response = layer.layer(handler).oneshot(request).await.unwrap();
    assert_eq!(grpc_status(&response), "3", "INVALID_ARGUMENT");
}
