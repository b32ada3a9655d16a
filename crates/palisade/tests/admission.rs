//! The admission layer end to end on loopback: a real axum server whose handler
//! holds its requests until the test lets them go, behind the inbound layer.
#![allow(clippy::disallowed_methods)] // a test is the root: it spawns the server
#![cfg(feature = "admission")]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::admission::AdmissionLayer;
use palisade::edge::Inbound;
use palisade::limit::adaptive::{AdaptiveConfig, AimdConfig};
use palisade::limit::admission::{AdmissionConfig, AdmissionController, Criticality};
use tokio::sync::Semaphore;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn fixed(limit: u32) -> AdmissionConfig {
    let mut aimd = AimdConfig::default();
    aimd.initial_limit = limit;
    aimd.min_limit = limit;
    aimd.max_limit = limit;
    AdmissionConfig::new(AdaptiveConfig::Aimd(aimd))
}

async fn serve(controller: AdmissionController) -> (std::net::SocketAddr, Arc<Semaphore>) {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let app = Router::new()
        .route(
            "/hold",
            routing::get(move || {
                let g = g.clone();
                async move {
                    g.acquire().await.unwrap().forget();
                    "served"
                }
            }),
        )
        // Inside the inbound layer: the Context with the deadline is there first.
        .layer(AdmissionLayer::new(controller))
        .layer(Inbound::new().layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, gate)
}

fn hold(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> hyper::Request<Empty<Bytes>> {
    let mut b = hyper::Request::get(format!("http://{addr}/hold"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Empty::new()).unwrap()
}

/// Waits (bounded) until the controller reaches a state.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never reached: {what}");
}

#[tokio::test]
async fn refusals_are_503_or_resource_exhausted_and_critical_goes_first() {
    let controller = AdmissionController::new(fixed(1)).unwrap();
    let (addr, gate) = serve(controller.clone()).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let first = tokio::spawn(client.request(hold(addr, &[])));
    until("one in flight", || controller.in_flight() == 1).await;

    // A deadline shorter than any wait: refused, answered 503 with Retry-After.
    let r = client
        .request(hold(
            addr,
            &[
                ("x-request-timeout-ms", "2"),
                ("x-palisade-criticality", "sheddable"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");

    // The same for gRPC: 200 with RESOURCE_EXHAUSTED and a pushback.
    let r = client
        .request(hold(
            addr,
            &[
                ("x-request-timeout-ms", "2"),
                ("content-type", "application/grpc"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["grpc-status"], "8");
    assert_eq!(r.headers()["grpc-retry-pushback-ms"], "100");

    // A sheddable retry queues first, then a critical request: the freed slot goes
    // to the critical one.
    let retry = tokio::spawn(client.request(hold(
        addr,
        &[
            ("x-palisade-criticality", "sheddable"),
            ("x-retry-attempt", "2"),
        ],
    )));
    until("one queued", || controller.queued() == 1).await;
    let critical =
        tokio::spawn(client.request(hold(addr, &[("x-palisade-criticality", "critical")])));
    until("two queued", || controller.queued() == 2).await;
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    until("critical admitted", || {
        controller.snapshot().admitted(Criticality::Critical) == 1
    })
    .await;
    assert_eq!(controller.queued(), 1);
    gate.add_permits(2);
    let r = critical.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "served");
    assert_eq!(retry.await.unwrap().unwrap().status(), 200);
    let snapshot = controller.snapshot();
    assert_eq!(snapshot.admitted(Criticality::Sheddable), 1);
    assert_eq!(controller.in_flight(), 0);
}
