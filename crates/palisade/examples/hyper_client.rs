//! Client side: calls to an HTTP dependency through a pipeline with an HTTP
//! classifier (a 503 is transient, a 404 the caller's business), retries with
//! backoff, a circuit breaker and timeouts.
//!
//! ```text
//! cargo run -p palisade --example hyper_client --features http -- http://127.0.0.1:3000/
//! ```

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig};
use palisade::classify::HttpStatus;
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::{Context, Pipeline};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url: hyper::Uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:3000/".to_owned())
        .parse()?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();

    // One pipeline per dependency, built once and shared by every call.
    let pipeline = Pipeline::builder("hello-service")
        .classifier(HttpStatus::new())
        .total_timeout(Duration::from_secs(2))
        .retry(
            RetryPolicy::builder()
                .backoff(
                    Backoff::exponential(Duration::from_millis(50))
                        .jitter(Jitter::Full)
                        .max_attempts(3)
                        .build()?,
                )
                .budget(RetryBudget::new())
                .build()?,
        )
        .breaker(Breaker::new(BreakerConfig::default())?)
        .attempt_timeout(Duration::from_millis(500))
        .build()?;

    // The request's deadline: the pipeline never waits past it.
    #[allow(clippy::disallowed_methods)] // `main` is where this request begins
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(3));
    match pipeline.execute(&ctx, |_ctx| client.get(url.clone())).await {
        Ok(response) => {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            println!("{status}: {}", String::from_utf8_lossy(&body));
        }
        Err(e) => {
            println!("failed ({}): {e}", e.kind_str());
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                println!("  caused by: {cause}");
                source = cause.source();
            }
        }
    }
    println!("health: {:?}", pipeline.snapshot().is_healthy());
    Ok(())
}
