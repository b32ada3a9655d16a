//! End to end through a real HTTP server on loopback: an axum server protected by
//! a `ServerLayer`, called by a hyper client through a retrying pipeline.
#![allow(clippy::disallowed_methods)] // measures a real server's answer time
#![cfg(all(
    feature = "tower",
    feature = "http",
    feature = "retry",
    feature = "limit"
))]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::backoff::{Backoff, Jitter};
use palisade::classify::HttpStatus;
use palisade::limit::{Bulkhead, BulkheadConfig};
use palisade::retry::RetryPolicy;
use palisade::tower::ServerLayer;
use palisade::{Context, Error, Pipeline};

const MS: Duration = Duration::from_millis(1);

/// Maps the server pipeline's error to a response: shed load is 503, too slow is 504.
fn to_response(e: Error<Infallible>) -> Result<axum::response::Response, Infallible> {
    let status = if e.is_rejected() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok(axum::response::Response::builder()
        .status(status)
        .body(Body::from(e.to_string()))
        .unwrap())
}

async fn serve() -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let server_pipeline = Pipeline::builder("server")
        .attempt_timeout(50 * MS)
        .bulkhead(Bulkhead::new(BulkheadConfig::new(8)).unwrap())
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/flaky",
            get(move || {
                let n = h.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    if n <= 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, "warming up")
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let app = app.layer(ServerLayer::new(server_pipeline, to_response));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

async fn get_text(
    pipeline: &Pipeline<HttpStatus>,
    client: &HttpClient,
    url: &str,
) -> Result<(u16, String), Error<hyper_util::client::legacy::Error>> {
    let uri: hyper::Uri = url.parse().unwrap();
    let response = pipeline
        .execute(&Context::background(), |_ctx| client.get(uri.clone()))
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn a_retrying_client_rides_out_a_warming_server() {
    let (addr, hits) = serve().await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let backoff = Backoff::constant(MS)
        .jitter(Jitter::None)
        .max_attempts(4)
        .build()
        .unwrap();
    let pipeline = Pipeline::builder("flaky-server")
        .classifier(HttpStatus::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Two 503s are transient: retried; the third answer is the 200.
    let (status, body) = get_text(&pipeline, &client, &format!("http://{addr}/flaky"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // The server's own attempt timeout answers a slow handler with a 504, which the
    // client's classifier calls transient: retried, and returned as the last word.
    let started = std::time::Instant::now();
    let (status, body) = get_text(&pipeline, &client, &format!("http://{addr}/slow"))
        .await
        .unwrap();
    assert_eq!(status, 504);
    assert!(body.contains("attempt timeout"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
