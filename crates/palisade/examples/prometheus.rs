//! Pipeline metrics served in the Prometheus text format.
//!
//! ```text
//! cargo run -p palisade --example prometheus --features metrics
//! curl http://127.0.0.1:9898/metrics
//! ```
//!
//! With `--print`, it prints the metrics once after a burst of calls and exits.
#![allow(clippy::disallowed_methods)] // the load and the metrics server are roots

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use palisade::breaker::{Breaker, BreakerConfig};
use palisade::{Context, Pipeline};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Install the exporter first: pipelines register their metrics when built.
    let handle = PrometheusBuilder::new().install_recorder()?;
    palisade::metrics::describe();

    let pipeline = Pipeline::builder("flaky-api")
        .attempt_timeout(Duration::from_millis(50))
        .breaker(Breaker::new(BreakerConfig::default())?)
        .build()?;

    // A dependency that fails one call in three.
    let load = {
        let pipeline = pipeline.clone();
        async move {
            let ctx = Context::background();
            for i in 0u64.. {
                let _ = pipeline
                    .execute(&ctx, |_| async move {
                        if i % 3 == 0 {
                            Err(std::io::Error::other("unavailable"))
                        } else {
                            Ok(i)
                        }
                    })
                    .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    if std::env::args().any(|a| a == "--print") {
        let _ = tokio::time::timeout(Duration::from_millis(300), load).await;
        print!("{}", handle.render());
        return Ok(());
    }
    tokio::spawn(load);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:9898").await?;
    println!("serving http://{}/metrics", listener.local_addr()?);
    loop {
        let (mut stream, _) = listener.accept().await?;
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = handle.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
