//! What `PipelineMiddleware` adds to a reqwest call: calls to an axum server on
//! loopback, through a plain `reqwest::Client` and through one with the
//! middleware (a pipeline with a retry policy, a breaker and an attempt
//! timeout), in interleaved rounds; prints the median per-call time of each
//! and the median ratio of the rounds.
//!
//! ```text
//! cargo run --release -p palisade --example reqwest_overhead --features reqwest-middleware
//! ```
//!
//! With `REQWEST_OVERHEAD_ONLY` set to `plain`, `bare`, `empty` or `guarded`,
//! it makes `REQWEST_OVERHEAD_CALLS` (default 2000) calls of that client alone
//! after a warm-up and exits: run it under
//! `valgrind --tool=callgrind` for each and compare the instructions per call.
#![allow(clippy::disallowed_methods)] // `main` is the root and measures wall time

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use palisade::Pipeline;
use palisade::breaker::{Breaker, BreakerConfig};
use palisade::reqwest::{PipelineMiddleware, ReqwestClassifier};
use palisade::retry::RetryPolicy;

const ROUNDS: usize = 31;
const CALLS: usize = 300;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let plain = reqwest::Client::new();
    let pipeline = Pipeline::builder("overhead")
        .classifier(ReqwestClassifier::new())
        .retry(RetryPolicy::builder().build()?)
        .breaker(Breaker::new(BreakerConfig::default())?)
        .attempt_timeout(Duration::from_secs(5))
        .build()?;
    let guarded = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PipelineMiddleware::new(pipeline))
        .build();
    // What reqwest-middleware itself costs, and the middleware over an empty
    // pipeline: where the difference comes from.
    let bare = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    let empty = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(PipelineMiddleware::new(
            Pipeline::builder("empty")
                .classifier(ReqwestClassifier::new())
                .build()?,
        ))
        .build();
    if let Ok(only) = std::env::var("REQWEST_OVERHEAD_ONLY") {
        let calls: usize = std::env::var("REQWEST_OVERHEAD_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000);
        for _ in 0..50 {
            plain.get(&url).send().await?.bytes().await?;
            for client in [&bare, &empty, &guarded] {
                client.get(&url).send().await?.bytes().await?;
            }
        }
        for _ in 0..calls {
            match only.as_str() {
                "plain" => plain.get(&url).send().await?.bytes().await?,
                "bare" => bare.get(&url).send().await?.bytes().await?,
                "empty" => empty.get(&url).send().await?.bytes().await?,
                "guarded" => guarded.get(&url).send().await?.bytes().await?,
                other => {
                    return Err(format!(
                        "REQWEST_OVERHEAD_ONLY is {other}; allowed: plain, bare, empty, guarded"
                    )
                    .into());
                }
            };
        }
        return Ok(());
    }
    for (name, client) in [
        ("reqwest-middleware, no middleware", &bare),
        ("PipelineMiddleware, empty pipeline", &empty),
    ] {
        let mut ratios = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            for _ in 0..CALLS {
                plain.get(&url).send().await?.bytes().await?;
            }
            let p = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for _ in 0..CALLS {
                client.get(&url).send().await?.bytes().await?;
            }
            ratios.push(started.elapsed().as_secs_f64() / p);
        }
        println!("{name}: median ratio to plain {:.3}", median(&mut ratios));
    }

    // Warm both connections up.
    for _ in 0..CALLS {
        plain.get(&url).send().await?.bytes().await?;
        guarded.get(&url).send().await?.bytes().await?;
    }
    let (mut plain_us, mut guarded_us, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let measure = async |with_middleware: bool| -> Result<f64, Box<dyn std::error::Error>> {
            let started = Instant::now();
            for _ in 0..CALLS {
                if with_middleware {
                    guarded.get(&url).send().await?.bytes().await?;
                } else {
                    plain.get(&url).send().await?.bytes().await?;
                }
            }
            Ok(started.elapsed().as_secs_f64() * 1e6 / CALLS as f64)
        };
        // Alternate which goes first.
        let (p, g) = if round % 2 == 0 {
            let p = measure(false).await?;
            (p, measure(true).await?)
        } else {
            let g = measure(true).await?;
            (measure(false).await?, g)
        };
        plain_us.push(p);
        guarded_us.push(g);
        ratios.push(g / p);
    }
    println!(
        "{ROUNDS} rounds of {CALLS} calls: plain {:.1} µs/call, with PipelineMiddleware {:.1} µs/call, median ratio {:.3}",
        median(&mut plain_us),
        median(&mut guarded_us),
        median(&mut ratios)
    );
    Ok(())
}
