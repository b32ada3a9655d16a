//! palisade's gRPC integration against a real tonic server on loopback: the
//! status classifier and pushback, retries of a generated client's call with
//! the attempt's `grpc-timeout` and trace metadata, the client layer around a
//! channel (an open breaker answers `UNAVAILABLE` without calling), and the
//! server layer (rejections as `RESOURCE_EXHAUSTED` with pushback, an open
//! breaker as `UNAVAILABLE`, a spent deadline as `DEADLINE_EXCEEDED`).
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts

use std::time::Duration;

use grpc_echo::EchoService;
use grpc_echo::pb::echo_client::EchoClient;
use grpc_echo::pb::echo_server::EchoServer;
use grpc_echo::pb::{EchoReply, EchoRequest};
use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration};
use palisade::classify::{Classify, Outcome};
use palisade::context::header::decode_grpc_timeout;
use palisade::context::trace::{RequestId, TraceContext, TraceFlags};
use palisade::edge::Inbound;
use palisade::limit::{RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::tonic::{
    ClientLayer, GRPC_RETRY_PUSHBACK_MS, GrpcClassifier, Pushback, into_status, parse_pushback,
    request, server_layer,
};
use palisade::{Context, Pipeline};
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// Serves `service` on loopback, behind palisade's server layers when given
/// a pipeline.
async fn serve(service: EchoService, server_pipeline: Option<Pipeline<GrpcClassifier>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let echo = EchoServer::new(service);
    match server_pipeline {
        Some(pipeline) => {
            let layers = ServiceBuilder::new()
                .layer(Inbound::new().grpc().layer())
                .layer(server_layer(pipeline));
            let router = Server::builder().layer(layers).add_service(echo);
            tokio::spawn(async move { router.serve_with_incoming(incoming).await.unwrap() });
        }
        None => {
            let router = Server::builder().add_service(echo);
            tokio::spawn(async move { router.serve_with_incoming(incoming).await.unwrap() });
        }
    }
    format!("http://{addr}")
}

async fn channel(url: String) -> Channel {
    Channel::from_shared(url).unwrap().connect().await.unwrap()
}

fn retrying(attempts: u32, max_delay: Duration) -> Pipeline<GrpcClassifier> {
    let backoff = Backoff::constant(Duration::from_millis(1))
        .jitter(Jitter::None)
        .max_delay(max_delay)
        .max_attempts(attempts)
        .build()
        .unwrap();
    Pipeline::builder("echo")
        .classifier(GrpcClassifier::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .build()
        .unwrap()
}

/// One call of the generated client through `pipeline`, retried with the
/// attempt's metadata.
async fn say(
    pipeline: &Pipeline<GrpcClassifier>,
    ctx: &Context,
    client: &EchoClient<Channel>,
    message: &str,
) -> Result<EchoReply, Status> {
    let message = EchoRequest {
        message: message.to_owned(),
    };
    pipeline
        .execute(ctx, |ctx| {
            let mut client = client.clone();
            let request = request(&ctx, message.clone());
            async move { client.say(request?).await }
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(into_status)
}

fn breaker(failures: u32) -> Breaker {
    Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(Some(failures))
            .open(OpenDuration::fixed(Duration::from_secs(60))),
    )
    .unwrap()
}

#[test]
fn every_code_has_its_outcome() {
    use Code::*;
    for code in [Unavailable, DeadlineExceeded, ResourceExhausted, Aborted] {
        assert!(
            GrpcClassifier::classify_code(code).is_retryable(),
            "{code:?}"
        );
    }
    for code in [
        Cancelled,
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        FailedPrecondition,
        OutOfRange,
    ] {
        assert_eq!(
            GrpcClassifier::classify_code(code),
            Outcome::Ignored,
            "{code:?}"
        );
    }
    for code in [Unknown, Internal, Unimplemented, DataLoss] {
        assert_eq!(
            GrpcClassifier::classify_code(code),
            Outcome::Permanent,
            "{code:?}"
        );
    }
    assert_eq!(GrpcClassifier::classify_code(Ok), Outcome::Success);
}

#[test]
fn pushback_is_read_defensively() {
    let max = Duration::from_secs(600);
    assert_eq!(
        parse_pushback(b"1500", max),
        Pushback::After(Duration::from_millis(1500))
    );
    assert_eq!(parse_pushback(b" 0 ", max), Pushback::After(Duration::ZERO));
    assert_eq!(
        parse_pushback(b"99999999999999999999999", max),
        Pushback::After(max)
    );
    for bad in [&b"-5"[..], b"", b"1.5", b"10ms", b"\xff"] {
        assert_eq!(parse_pushback(bad, max), Pushback::DoNotRetry, "{bad:?}");
    }
    let classifier = GrpcClassifier::new();
    let mut status = Status::unavailable("busy");
    status
        .metadata_mut()
        .insert(GRPC_RETRY_PUSHBACK_MS, "250".parse().unwrap());
    let result: Result<tonic::Response<()>, Status> = Err(status);
    assert_eq!(
        classifier.classify(&result).retry_after(),
        Some(Duration::from_millis(250))
    );
    let mut status = Status::unavailable("go away");
    status
        .metadata_mut()
        .insert(GRPC_RETRY_PUSHBACK_MS, "-1".parse().unwrap());
    let result: Result<tonic::Response<()>, Status> = Err(status);
    assert_eq!(classifier.classify(&result), Outcome::Permanent);
}

#[tokio::test]
async fn unavailable_is_retried_with_the_attempts_metadata() {
    let service = EchoService::default().fail_first(2, Code::Unavailable, None);
    let url = serve(service.clone(), None).await;
    let client = EchoClient::new(channel(url).await);
    let pipeline = retrying(3, Duration::from_millis(1));
    let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    let (ctx, _guard) = Context::background()
        .with_value(trace.clone())
        .with_value(RequestId::parse("call-9").unwrap())
        .with_timeout(Duration::from_secs(10));

    let reply = say(&pipeline, &ctx, &client, "hello").await.unwrap();
    assert_eq!(reply.message, "hello");
    assert_eq!(service.calls(), 3);
    let budget = decode_grpc_timeout(&reply.grpc_timeout).unwrap();
    assert!(
        budget <= Duration::from_secs(10) && budget > Duration::from_secs(9),
        "{budget:?}"
    );
    assert!(
        reply.traceparent.contains(&trace.trace_id().to_string()),
        "{}",
        reply.traceparent
    );
    assert_eq!(reply.request_id, "call-9");
}

#[tokio::test(start_paused = true)]
async fn pushback_is_honoured() {
    let service = EchoService::default().fail_first(1, Code::ResourceExhausted, Some("20000"));
    let url = serve(service.clone(), None).await;
    let client = EchoClient::new(channel(url).await);
    let pipeline = retrying(3, Duration::from_secs(60));

    let started = tokio::time::Instant::now();
    let reply = say(&pipeline, &Context::background(), &client, "later")
        .await
        .unwrap();
    assert_eq!(reply.message, "later");
    assert_eq!(service.calls(), 2);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(20), "{waited:?}");
    assert!(waited < Duration::from_secs(21), "{waited:?}");
}

#[tokio::test]
async fn a_pushback_that_says_no_stops_the_retries() {
    let service = EchoService::default().fail_first(5, Code::Unavailable, Some("-1"));
    let url = serve(service.clone(), None).await;
    let client = EchoClient::new(channel(url).await);
    let pipeline = retrying(3, Duration::from_millis(1));

    let status = say(&pipeline, &Context::background(), &client, "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(service.calls(), 1);
}

#[tokio::test]
async fn the_last_status_comes_back_when_retries_run_out() {
    let service = EchoService::default().fail_first(5, Code::Unavailable, None);
    let url = serve(service.clone(), None).await;
    let client = EchoClient::new(channel(url).await);
    let pipeline = retrying(3, Duration::from_millis(1));

    let status = say(&pipeline, &Context::background(), &client, "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("after 3 attempts"),
        "{}",
        status.message()
    );
    assert_eq!(service.calls(), 3);

    // A caller's mistake is not retried.
    let service = EchoService::default().fail_first(5, Code::InvalidArgument, None);
    let url = serve(service.clone(), None).await;
    let client = EchoClient::new(channel(url).await);
    let status = say(&pipeline, &Context::background(), &client, "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(service.calls(), 1);
}

#[tokio::test]
async fn the_client_layer_writes_the_attempts_deadline() {
    let service = EchoService::default();
    let url = serve(service.clone(), None).await;
    let pipeline = Pipeline::builder("echo")
        .classifier(GrpcClassifier::new())
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(ClientLayer::new(pipeline))
        .service(channel(url).await);
    let mut client = EchoClient::new(channel);
    let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    let ctx = Context::background().with_value(trace.clone());

    let mut call = tonic::Request::new(EchoRequest {
        message: "hi".to_owned(),
    });
    call.extensions_mut().insert(ctx);
    let reply = client.say(call).await.unwrap().into_inner();
    let budget = decode_grpc_timeout(&reply.grpc_timeout).unwrap();
    assert!(
        budget <= Duration::from_secs(2) && budget > Duration::from_secs(1),
        "{budget:?}"
    );
    assert!(
        reply.traceparent.contains(&trace.trace_id().to_string()),
        "{}",
        reply.traceparent
    );
    assert_eq!(service.calls(), 1);
}

#[tokio::test]
async fn the_client_layer_answers_unavailable_when_the_breaker_is_open() {
    let service = EchoService::default().fail_first(10, Code::Internal, None);
    let url = serve(service.clone(), None).await;
    let pipeline = Pipeline::builder("echo")
        .classifier(GrpcClassifier::new())
        .breaker(breaker(2))
        .build()
        .unwrap();
    let channel = ServiceBuilder::new()
        .layer(ClientLayer::new(pipeline))
        .service(channel(url).await);
    let mut client = EchoClient::new(channel);
    let message = || EchoRequest {
        message: "x".to_owned(),
    };

    for _ in 0..2 {
        let status = client.say(message()).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal, "{status:?}");
    }
    let status = client.say(message()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("circuit breaker"),
        "{}",
        status.message()
    );
    assert!(status.metadata().get(GRPC_RETRY_PUSHBACK_MS).is_some());
    assert_eq!(service.calls(), 2, "an open breaker calls nothing");
}

#[tokio::test]
async fn the_server_sheds_with_resource_exhausted_and_pushback() {
    let service = EchoService::default();
    let server = Pipeline::builder("echo-server")
        .classifier(GrpcClassifier::new())
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1)).unwrap())
        .build()
        .unwrap();
    let url = serve(service.clone(), Some(server)).await;
    let mut client = EchoClient::new(channel(url).await);
    let message = || EchoRequest {
        message: "x".to_owned(),
    };

    client.say(message()).await.unwrap();
    let status = client.say(message()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let pushback = status.metadata().get(GRPC_RETRY_PUSHBACK_MS).unwrap();
    match parse_pushback(pushback.as_bytes(), Duration::from_secs(60)) {
        Pushback::After(delay) => {
            assert!(
                delay > Duration::ZERO && delay <= Duration::from_secs(1),
                "{delay:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(service.calls(), 1);
}

#[tokio::test]
async fn the_servers_breaker_answers_unavailable() {
    let service = EchoService::default().fail_first(1, Code::Internal, None);
    let server = Pipeline::builder("echo-server")
        .classifier(GrpcClassifier::new())
        .breaker(breaker(1))
        .build()
        .unwrap();
    let url = serve(service.clone(), Some(server)).await;
    let mut client = EchoClient::new(channel(url).await);
    let message = || EchoRequest {
        message: "x".to_owned(),
    };

    assert_eq!(
        client.say(message()).await.unwrap_err().code(),
        Code::Internal
    );
    let status = client.say(message()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(service.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_spent_deadline_is_deadline_exceeded() {
    // A budget already spent on the client side is not sent.
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(2));
    let status = request(&ctx, EchoRequest::default()).unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);

    // A handler slower than the server's attempt timeout is answered there.
    let service = EchoService::default().delay(Duration::from_secs(5));
    let server = Pipeline::builder("echo-server")
        .classifier(GrpcClassifier::new())
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let url = serve(service.clone(), Some(server)).await;
    let mut client = EchoClient::new(channel(url).await);
    let started = tokio::time::Instant::now();
    let status = client.say(EchoRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(service.calls(), 1);
}
