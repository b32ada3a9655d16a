//! palisade's errors as axum responses, and a hyper client with the outbound
//! layer, against a real axum server on loopback: handlers that use `?` on the
//! pipeline's error (503 with `Retry-After`, 504, 500, 502), a `ServerLayer`
//! answering with `palisade::axum::respond`, and the attempt's deadline and
//! trace arriving from a hyper client through `Outbound` into the server's
//! `Inbound` context.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts
#![cfg(all(
    feature = "axum",
    feature = "retry",
    feature = "breaker",
    feature = "limit"
))]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::axum::{respond, retry_after_of, status_of};
use palisade::backoff::{Backoff, Jitter};
use palisade::classify::{HttpStatus, Outcome, Rejection, Strategy};
use palisade::context::trace::{TraceContext, TraceFlags};
use palisade::edge::{Inbound, Outbound};
use palisade::limit::{RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::tower::ServerLayer;
use palisade::{Context, Error, Pipeline, TimeoutKind};
use tower::{Layer, ServiceExt};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Status, `Retry-After` and body of a GET.
async fn get_once(client: &HttpClient, url: String) -> (u16, Option<String>, String) {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry_after,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn each_error_has_its_status() {
    let rejected: Error<io::Error> = Error::rejected(
        Rejection::new(Strategy::Bulkhead).with_retry_after(Duration::from_millis(1500)),
    );
    assert_eq!(status_of(&rejected), 503);
    assert_eq!(retry_after_of(&rejected), Some(Duration::from_secs(2)));
    let unhinted: Error<io::Error> = Error::rejected(Rejection::new(Strategy::CircuitBreaker));
    assert_eq!(retry_after_of(&unhinted), Some(Duration::from_secs(1)));
    let timeout: Error<io::Error> = Error::timeout(TimeoutKind::Attempt, Duration::from_millis(5));
    assert_eq!(status_of(&timeout), 504);
    assert_eq!(retry_after_of(&timeout), None);
    let inner = Error::inner(io::Error::other("db down"), Outcome::Permanent);
    assert_eq!(status_of(&inner), 502);
}

#[tokio::test(start_paused = true)]
async fn a_handler_answers_with_the_pipelines_error() {
    let guarded = Pipeline::builder("dependency")
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let (p1, p2, p3) = (guarded.clone(), guarded.clone(), guarded.clone());
    let app = Router::new()
        .route(
            "/slow",
            get(move || async move {
                p1.execute(&Context::background(), |_| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<_, io::Error>("late")
                })
                .await
            }),
        )
        .route(
            "/panic",
            get(move || async move {
                p2.execute(&Context::background(), |_| async {
                    if true {
                        panic!("a bug");
                    }
                    Ok::<_, io::Error>("never")
                })
                .await
            }),
        )
        .route(
            "/fail",
            get(move || async move {
                p3.execute(&Context::background(), |_| async {
                    Err::<&str, _>(io::Error::other("secret connection string"))
                })
                .await
            }),
        )
        .route(
            "/shed",
            get(|| async {
                let shed: Error<io::Error> = Error::rejected(
                    Rejection::new(Strategy::RateLimiter)
                        .with_retry_after(Duration::from_millis(2500)),
                );
                Err::<&str, _>(shed)
            }),
        );
    let url = serve(app).await;
    let client = client();

    let (status, retry_after, _) = get_once(&client, format!("{url}/slow")).await;
    assert_eq!((status, retry_after), (504, None));
    let (status, _, _) = get_once(&client, format!("{url}/panic")).await;
    assert_eq!(status, 500);
    let (status, _, body) = get_once(&client, format!("{url}/fail")).await;
    assert_eq!(status, 502);
    assert!(
        !body.contains("secret"),
        "the inner error's text stays inside: {body}"
    );
    let (status, retry_after, _) = get_once(&client, format!("{url}/shed")).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("3")));
}

#[tokio::test]
async fn a_server_layer_sheds_with_503_and_retry_after() {
    let shed = Pipeline::builder("server")
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1)).unwrap())
        .build()
        .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async { "hello" }
            }),
        )
        .layer(ServerLayer::new(shed, respond));
    let url = serve(app).await;
    let client = client();

    assert_eq!(get_once(&client, url.clone()).await.0, 200);
    let (status, retry_after, _) = get_once(&client, url).await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("1")));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hyper_client_carries_the_attempts_deadline_and_trace() {
    // The server: a context per request, from its headers; the first answer
    // is a 503, the next ones report what the context holds.
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route(
            "/",
            get(move |request: Request| {
                let n = h.fetch_add(1, Ordering::SeqCst);
                async move {
                    let ctx = request.extensions().get::<Context>().unwrap();
                    if n == 0 {
                        return Err(Error::<io::Error>::rejected(Rejection::new(
                            Strategy::Bulkhead,
                        )));
                    }
                    let remaining = ctx.remaining().unwrap().as_millis();
                    let trace = TraceContext::from_context(ctx).unwrap().trace_id();
                    Ok(format!("{remaining} {trace}"))
                }
            }),
        )
        .layer(Inbound::new().layer());
    let url = serve(app).await;

    // The client: the outbound layer over hyper-util's client, under a
    // retrying pipeline that puts each attempt's context in the request.
    let client = Outbound::new().layer().layer(client());
    let backoff = Backoff::constant(Duration::from_secs(1))
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder("upstream")
        .classifier(HttpStatus::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .build()
        .unwrap();
    let trace = TraceContext::new_root(TraceFlags::SAMPLED);
    let (ctx, _guard) = Context::background()
        .with_value(trace.clone())
        .with_timeout(Duration::from_secs(10));
    let uri: hyper::Uri = url.parse().unwrap();

    let response = pipeline
        .execute(&ctx, |attempt| {
            let mut request = http::Request::get(uri.clone()).body(Empty::new()).unwrap();
            request.extensions_mut().insert(attempt);
            client.clone().oneshot(request)
        })
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    let (remaining, trace_id) = body.split_once(' ').unwrap();
    let remaining: u64 = remaining.parse().unwrap();
    // 10 s, less the 1 s backoff and the 5 ms margin.
    assert!(remaining <= 8_995 && remaining > 8_900, "{remaining}");
    assert_eq!(trace_id, trace.trace_id().to_string());
}
