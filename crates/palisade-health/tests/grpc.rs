//! The gRPC health service on a real tonic server on loopback: a tonic
//! client's `Watch` sees readiness go from `SERVING` to `NOT_SERVING`.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(feature = "grpc")]

use std::time::Duration;

use palisade_health::{Criticality, Groups, Health};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The status a `Watch` sends next; an update must come within 10 s, a bound
/// that only a broken updater reaches.
async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("no update within 10 s")
        .unwrap()
        .expect("the watch ended")
        .status()
}

/// A tonic server of `health`'s gRPC service on loopback, and a client of it.
async fn serve(
    health: &Health,
) -> (
    HealthClient<tonic::transport::Channel>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let service = health.grpc_service();
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (HealthClient::new(channel), server)
}

async fn check(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> ServingStatus {
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn a_service_not_started_answers_not_serving_from_the_start_and_a_stopped_one_too() {
    let health = Health::builder()
        .evaluate_every(Duration::from_secs(3600))
        .check("warm-cache", Criticality::Critical, Groups::STARTUP, || {
            false
        })
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap();
    let (mut client, server) = serve(&health).await;
    // Not started: readiness fails, and the server as a whole says so at once.
    assert_eq!(check(&mut client, "").await, ServingStatus::NotServing);
    assert_eq!(
        check(&mut client, "startup").await,
        ServingStatus::NotServing
    );
    assert_eq!(check(&mut client, "liveness").await, ServingStatus::Serving);
    // Stopped: nothing vouches for the server any more.
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    health.stop();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    server.abort();
}

#[tokio::test]
async fn watch_sees_serving_then_not_serving_at_shutdown() {
    let health = Health::builder()
        .evaluate_every(Duration::from_secs(3600))
        .check("disk", Criticality::Critical, Groups::READINESS, || true)
        .start()
        .unwrap();
    let (mut client, server) = serve(&health).await;
    let check = client
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.status(), ServingStatus::Serving);

    let mut watch = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    health.begin_shutdown();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    // Liveness stays up while the service drains.
    let check = client
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.status(), ServingStatus::Serving);
    server.abort();
}
