//! Server side: an axum service that sheds load and bounds handler time with a
//! pipeline, mapping the pipeline's error to 503 and 504.
//!
//! ```text
//! cargo run -p palisade --example axum_server --features tower,http
//! curl -i http://127.0.0.1:3000/        # 200
//! curl -i http://127.0.0.1:3000/slow    # 504 after 200 ms
//! ```

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use palisade::limit::{Bulkhead, BulkheadConfig};
use palisade::tower::ServerLayer;
use palisade::{Error, Pipeline};

/// Shed load is 503 (with the hint of when to come back), too slow is 504.
fn to_response(e: Error<Infallible>) -> Result<Response, Infallible> {
    let status = if e.is_rejected() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if e.is_timeout() {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut response = Response::builder().status(status);
    if let Some(after) = e.outcome().retry_after() {
        response = response.header("retry-after", after.as_secs().max(1).to_string());
    }
    Ok(response
        .body(Body::from(e.to_string()))
        .expect("a valid response"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pipeline = Pipeline::builder("http-server")
        .bulkhead(Bulkhead::new(BulkheadConfig::new(100))?) // at most 100 requests at once
        .attempt_timeout(Duration::from_millis(200)) // no handler runs longer
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                #[allow(clippy::disallowed_methods)] // slow on purpose: the layer drops it
                tokio::time::sleep(Duration::from_secs(2)).await;
                "too late"
            }),
        )
        .layer(ServerLayer::new(pipeline, to_response));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
