//! The guide's gRPC example, as a program against a real tonic server on
//! loopback: the server takes each call's deadline from `grpc-timeout` and
//! sheds load with a rate limit; the client retries `UNAVAILABLE` and
//! `RESOURCE_EXHAUSTED` (honouring the server's pushback), each attempt
//! carrying its own `grpc-timeout` and trace.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns servers and starts contexts

use std::time::Duration;

use grpc_echo::EchoService;
use grpc_echo::pb::EchoRequest;
use grpc_echo::pb::echo_client::EchoClient;
use grpc_echo::pb::echo_server::EchoServer;
use palisade::backoff::{Backoff, Jitter};
use palisade::edge::Inbound;
use palisade::limit::{RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::tonic::{GrpcClassifier, into_status, request, server_layer};
use palisade::{Context, Pipeline};
use tonic::transport::{Channel, Server};
use tower::ServiceBuilder;

#[tokio::test(start_paused = true)]
async fn the_guide_example() -> Result<(), Box<dyn std::error::Error>> {
    // The server: each call's context from its grpc-timeout, and at most 2
    // calls a second (a third is answered RESOURCE_EXHAUSTED with
    // grpc-retry-pushback-ms).
    let shed = Pipeline::builder("echo-server")
        .classifier(GrpcClassifier::new())
        .rate_limiter(RateLimiter::new(
            RateLimiterConfig::per_second(2).with_burst(2),
        )?)
        .build()?;
    let layers = ServiceBuilder::new()
        .layer(Inbound::new().grpc().layer())
        .layer(server_layer(shed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let router = Server::builder()
        .layer(layers)
        .add_service(EchoServer::new(EchoService::default()));
    tokio::spawn(router.serve_with_incoming(incoming));

    // The client: a retrying pipeline around the generated client's call.
    let client = EchoClient::new(Channel::from_shared(url)?.connect().await?);
    let echo = Pipeline::builder("echo")
        .classifier(GrpcClassifier::new())
        .retry(
            RetryPolicy::builder()
                .backoff(
                    Backoff::exponential(Duration::from_millis(10))
                        .jitter(Jitter::None)
                        .max_delay(Duration::from_secs(5))
                        .max_attempts(3)
                        .build()?,
                )
                .build()?,
        )
        .attempt_timeout(Duration::from_secs(1))
        .build()?;
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(10));

    let started = tokio::time::Instant::now();
    for n in 0..3 {
        let message = EchoRequest {
            message: format!("hello {n}"),
        };
        let reply = echo
            .execute(&ctx, |attempt| {
                let mut client = client.clone();
                let request = request(&attempt, message.clone());
                async move { client.say(request?).await }
            })
            .await
            .map_err(into_status)?
            .into_inner();
        assert_eq!(reply.message, format!("hello {n}"));
        // The attempt's budget: its 1 s timeout less the 5 ms margin.
        assert!(
            reply.grpc_timeout.starts_with("995"),
            "{}",
            reply.grpc_timeout
        );
    }
    // The third call was shed once and retried after the server's pushback.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}
