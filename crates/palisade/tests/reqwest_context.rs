//! `PipelineMiddleware` with a request that carries no `Context` in its
//! extensions: it runs under the task's context (`palisade::context::scope`),
//! and with none, under the background's, sending no deadline header.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts
#![cfg(all(feature = "reqwest-middleware", feature = "retry"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use palisade::reqwest::{PipelineMiddleware, ReqwestClassifier};
use palisade::{Context, Pipeline};

type Seen = Arc<Mutex<Vec<HeaderMap>>>;

async fn record(State(seen): State<Seen>, headers: HeaderMap) -> StatusCode {
    seen.lock().unwrap().push(headers);
    StatusCode::OK
}

#[tokio::test]
async fn a_request_without_a_context_runs_under_the_tasks_or_none() {
    let seen = Seen::default();
    let app = Router::new()
        .route("/", get(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // No attempt timeout: the only deadline is the caller's.
    let pipeline = Pipeline::builder("upstream")
        .classifier(ReqwestClassifier::new())
        .retry(palisade::retry::RetryPolicy::builder().build().unwrap())
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PipelineMiddleware::new(pipeline))
        .build();

    // None at all: the background context, no deadline to send.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    // The task's context.
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(5));
    let response = palisade::context::scope(ctx, client.get(&url).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(!seen[0].contains_key("x-request-timeout-ms"));
    let budget: u64 = seen[1]["x-request-timeout-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5000).contains(&budget), "{budget}");
}
