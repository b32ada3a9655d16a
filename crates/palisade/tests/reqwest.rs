//! reqwest through a pipeline, against real axum servers on loopback: retried
//! 503s, `Retry-After` honoured (in virtual time), the attempt's deadline,
//! trace and request id arriving at the server, an open breaker, a streamed
//! body sent once, and the same through `reqwest-middleware`.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts
#![cfg(all(feature = "reqwest-middleware", feature = "retry", feature = "breaker"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration};
use palisade::classify::{Classify, Delivery, Outcome, Strategy};
use palisade::context::trace::{RequestId, TraceContext, TraceFlags};
use palisade::reqwest::{
    PipelineMiddleware, RequestBuilderExt, ReqwestClassifier, is_one_shot, pipeline_error,
};
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline};

/// A scripted answer: a status and a `Retry-After`.
type Answer = (u16, Option<&'static str>);

/// What the server saw and what it answers next.
#[derive(Clone, Default)]
struct Server {
    /// Answers to give, in order, before the 200s: (status, Retry-After).
    script: Arc<Mutex<Vec<Answer>>>,
    /// The headers of every request, in order.
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Server {
    fn script(self, answers: &[Answer]) -> Self {
        *self.script.lock().unwrap() = answers.iter().rev().copied().collect();
        self
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn header(&self, n: usize, name: &str) -> Option<String> {
        self.seen.lock().unwrap()[n]
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn answer(State(server): State<Server>, headers: HeaderMap) -> Response {
    server.seen.lock().unwrap().push(headers);
    match server.script.lock().unwrap().pop() {
        Some((status, retry_after)) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), "scripted").into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            response
        }
        None => (StatusCode::OK, "ok").into_response(),
    }
}

async fn upload(State(server): State<Server>, headers: HeaderMap, body: String) -> Response {
    server.seen.lock().unwrap().push(headers);
    match server.script.lock().unwrap().pop() {
        Some((status, _)) => (StatusCode::from_u16(status).unwrap(), body).into_response(),
        None => (StatusCode::OK, body).into_response(),
    }
}

async fn serve(server: Server) -> String {
    let app = Router::new()
        .route("/", get(answer))
        .route("/upload", post(upload))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn retrying(name: &'static str, attempts: u32, delay: Duration) -> Pipeline<ReqwestClassifier> {
    let backoff = Backoff::constant(delay)
        .jitter(Jitter::None)
        .max_attempts(attempts)
        .build()
        .unwrap();
    Pipeline::builder(name)
        .classifier(ReqwestClassifier::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_503_then_a_200_is_retried() {
    let server = Server::default().script(&[(503, None)]);
    let url = serve(server.clone()).await;
    let pipeline = retrying("upstream", 3, Duration::from_millis(1));
    let client = reqwest::Client::new();

    let response = client
        .get(&url)
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_last_503_is_the_answer_when_retries_run_out() {
    let server = Server::default().script(&[(503, None), (503, None), (503, None)]);
    let url = serve(server.clone()).await;
    let pipeline = retrying("upstream", 2, Duration::from_millis(1));

    let response = reqwest::Client::new()
        .get(&url)
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let server = Server::default().script(&[(503, Some("30"))]);
    let url = serve(server.clone()).await;
    // The backoff alone would retry after 1 ms; the server asked for 30 s (a
    // hint is bounded by the backoff's largest delay).
    let backoff = Backoff::constant(Duration::from_millis(1))
        .jitter(Jitter::None)
        .max_delay(Duration::from_secs(60))
        .max_attempts(3)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder("upstream")
        .classifier(ReqwestClassifier::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let response = reqwest::Client::new()
        .get(&url)
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 2);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(30), "{waited:?}");
    assert!(waited < Duration::from_secs(31), "{waited:?}");
}

#[tokio::test]
async fn a_malformed_retry_after_gives_no_hint() {
    let server = Server::default().script(&[(503, Some("soon")), (503, Some("7"))]);
    let url = serve(server.clone()).await;
    let client = reqwest::Client::new();
    let classifier = ReqwestClassifier::new();

    let first = client.get(&url).send().await.unwrap();
    assert_eq!(classifier.classify_response(&first), Outcome::transient());
    let second = client.get(&url).send().await;
    assert_eq!(
        classifier.classify(&second).retry_after(),
        Some(Duration::from_secs(7))
    );
    let third = client.get(&url).send().await.unwrap();
    assert_eq!(classifier.classify_response(&third), Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_arrives_shrinking_with_the_trace_and_request_id() {
    let server = Server::default().script(&[(503, None), (503, None)]);
    let url = serve(server.clone()).await;
    let pipeline = retrying("upstream", 3, Duration::from_secs(1));
    let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    let id = RequestId::parse("order-7").unwrap();
    let (ctx, _guard) = Context::background()
        .with_value(trace.clone())
        .with_value(id)
        .with_timeout(Duration::from_secs(10));

    let response = reqwest::Client::new()
        .get(&url)
        .send_with(&pipeline, &ctx)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 3);
    let budgets: Vec<u64> = (0..3)
        .map(|n| {
            server
                .header(n, "x-request-timeout-ms")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    // 10 s less the 5 ms margin, then a second less after each 1 s backoff.
    assert!(budgets[0] <= 9_995 && budgets[0] > 9_900, "{budgets:?}");
    assert!(
        budgets[1] < budgets[0] && budgets[2] < budgets[1],
        "{budgets:?}"
    );
    assert!(budgets[0] - budgets[2] >= 2_000, "{budgets:?}");
    for n in 0..3 {
        let parent = server.header(n, "traceparent").unwrap();
        assert!(parent.contains(&trace.trace_id().to_string()), "{parent}");
        assert_eq!(server.header(n, "x-request-id").as_deref(), Some("order-7"));
    }
}

#[tokio::test]
async fn a_request_without_budget_is_not_sent() {
    let server = Server::default();
    let url = serve(server.clone()).await;
    let pipeline = retrying("upstream", 3, Duration::from_millis(1));
    // Less than the 5 ms margin left: nothing worth sending.
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(3));

    let error = reqwest::Client::new()
        .get(&url)
        .send_with(&pipeline, &ctx)
        .await
        .unwrap_err();
    assert!(
        error
            .inner_error()
            .and_then(|e| e.not_sent_because())
            .is_some(),
        "{error}"
    );
    match error.outcome() {
        Outcome::Rejected(r) => assert_eq!(r.strategy(), Strategy::Deadline),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn the_breaker_opens_and_the_error_says_so() {
    let server = Server::default().script(&[(503, None); 10]);
    let url = serve(server.clone()).await;
    let breaker = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(Some(2))
            .open(OpenDuration::fixed(Duration::from_secs(60))),
    )
    .unwrap();
    let pipeline = Pipeline::builder("upstream")
        .classifier(ReqwestClassifier::new())
        .breaker(breaker)
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let ctx = Context::background();

    for _ in 0..2 {
        let response = client.get(&url).send_with(&pipeline, &ctx).await.unwrap();
        assert_eq!(response.status(), 503);
    }
    let error = client
        .get(&url)
        .send_with(&pipeline, &ctx)
        .await
        .unwrap_err();
    assert!(error.is_breaker_open(), "{error}");
    assert!(error.to_string().contains("circuit breaker"), "{error}");
    assert_eq!(server.hits(), 2, "an open breaker sends nothing");
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_not_delivered() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let pipeline = retrying("gone", 3, Duration::from_millis(1));

    let error = reqwest::Client::new()
        .get(&url)
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap_err();
    assert!(error.is_retries_exhausted(), "{error}");
    assert_eq!(error.attempts(), Some(3));
    match error.outcome() {
        Outcome::Transient(t) => assert_eq!(t.delivery(), Delivery::NotDelivered),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_streamed_body_gets_one_attempt() {
    let server = Server::default().script(&[(503, None)]);
    let url = serve(server.clone()).await;
    let pipeline = retrying("upstream", 3, Duration::from_millis(1));
    let client = reqwest::Client::new();
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![Ok("a"), Ok("b")];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let request = client
        .post(format!("{url}/upload"))
        .body(body)
        .build()
        .unwrap();
    assert!(is_one_shot(&request));
    let request = reqwest::RequestBuilder::from_parts(client.clone(), request);

    // The 503 stands: the stream is gone after the first attempt.
    let response = request
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "ab");
    assert_eq!(server.hits(), 1);

    // A body of bytes is retried.
    let server = Server::default().script(&[(503, None)]);
    let url = serve(server.clone()).await;
    let response = client
        .post(format!("{url}/upload"))
        .body("ab")
        .send_with(&pipeline, &Context::background())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 2);
}

fn with_middleware(
    pipeline: Pipeline<ReqwestClassifier>,
) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PipelineMiddleware::new(pipeline))
        .build()
}

#[tokio::test]
async fn the_middleware_retries_and_propagates_the_context() {
    let server = Server::default().script(&[(503, None), (502, None)]);
    let url = serve(server.clone()).await;
    let client = with_middleware(retrying("upstream", 3, Duration::from_millis(1)));
    let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    let (ctx, _guard) = Context::background()
        .with_value(trace.clone())
        .with_timeout(Duration::from_secs(20));

    let response = client.get(&url).with_extension(ctx).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.hits(), 3);
    for n in 0..3 {
        let budget: u64 = server
            .header(n, "x-request-timeout-ms")
            .unwrap()
            .parse()
            .unwrap();
        assert!(budget <= 19_995 && budget > 10_000, "{budget}");
        let parent = server.header(n, "traceparent").unwrap();
        assert!(parent.contains(&trace.trace_id().to_string()), "{parent}");
    }
}

#[tokio::test]
async fn the_middleware_says_when_the_breaker_is_open() {
    let server = Server::default().script(&[(503, None); 10]);
    let url = serve(server.clone()).await;
    let breaker = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(Some(1))
            .open(OpenDuration::fixed(Duration::from_secs(60))),
    )
    .unwrap();
    let client = with_middleware(
        Pipeline::builder("upstream")
            .classifier(ReqwestClassifier::new())
            .breaker(breaker)
            .build()
            .unwrap(),
    );

    assert_eq!(client.get(&url).send().await.unwrap().status(), 503);
    let error = client.get(&url).send().await.unwrap_err();
    let pipeline_error = pipeline_error(&error).expect("the pipeline's error");
    assert!(pipeline_error.is_breaker_open(), "{error}");
    assert!(error.to_string().contains("circuit breaker"), "{error}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn the_middleware_passes_the_clients_error_through() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = with_middleware(
        Pipeline::builder("gone")
            .classifier(ReqwestClassifier::new())
            .build()
            .unwrap(),
    );

    let error = client.get(&url).send().await.unwrap_err();
    assert!(error.is_connect(), "{error}");
}

/// A server that reads each request and closes the connection without an
/// answer: the request reached it, and the client sees a reset.
async fn hang_up() -> (String, Arc<std::sync::atomic::AtomicU32>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        // Bounded: no test sends more.
        for _ in 0..64 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn a_reset_is_retried_only_for_an_idempotent_method() {
    let (url, hits) = hang_up().await;
    let pipeline = retrying("hangs-up", 3, Duration::from_millis(1));
    let client = reqwest::Client::new();
    let ctx = Context::background();

    let error = client
        .get(&url)
        .send_with(&pipeline, &ctx)
        .await
        .unwrap_err();
    assert_eq!(error.attempts(), Some(3), "{error}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);

    let error = client
        .post(&url)
        .body("charge the card")
        .send_with(&pipeline, &ctx)
        .await
        .unwrap_err();
    assert_eq!(error.outcome(), Outcome::Permanent, "{error}");
    assert!(error.inner_error().unwrap().reqwest_error().is_some());
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "the POST was sent once"
    );

    // Refused: it never reached a server, so even a POST is retried.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = client
        .post(&refused)
        .body("charge the card")
        .send_with(&pipeline, &ctx)
        .await
        .unwrap_err();
    assert_eq!(error.attempts(), Some(3), "{error}");
}

#[tokio::test]
async fn the_middleware_retries_a_reset_post_never() {
    let (url, hits) = hang_up().await;
    let client = with_middleware(retrying("hangs-up", 3, Duration::from_millis(1)));

    let error = client.post(&url).body("x").send().await.unwrap_err();
    assert!(
        error.is_request() || error.is_body(),
        "the reqwest error itself: {error:?}"
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    let error = client.get(&url).send().await.unwrap_err();
    let pipeline_error = pipeline_error(&error).expect("retries exhausted");
    assert_eq!(pipeline_error.attempts(), Some(3), "{error}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 4);
}
