#![allow(clippy::disallowed_methods)] // a test is the root: it spawns and sleeps in virtual time
#![cfg(all(feature = "tower", feature = "http", feature = "limit"))]

//! The admission layer: what it reads from a request, how it answers a refusal.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use palisade::Context;
use palisade::admission::{AdmissionConfig, AdmissionLayer, Attempt, Criticality};
use palisade::edge::Inbound;
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceExt, service_fn};

/// A handler that holds its request until `gate` gives a permit.
fn held(
    gate: Arc<Semaphore>,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_r: Request<()>| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }
    })
}

fn no_queue(limit: u32) -> AdmissionLayer {
    AdmissionLayer::new(AdmissionConfig::fixed(limit).with_queue(0, Duration::ZERO)).unwrap()
}

#[tokio::test(start_paused = true)]
async fn refusals_answer_503_with_retry_after() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = no_queue(1);
    let svc = layer.layer(held(gate.clone()));
    let first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let refused = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    gate.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    let s = layer.admission().snapshot();
    assert_eq!((s.in_flight, s.admitted[1], s.refused[0]), (0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn grpc_refusals_are_resource_exhausted_with_pushback() {
    let gate = Arc::new(Semaphore::new(0));
    let svc = no_queue(1).layer(held(gate.clone()));
    let _first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let request = Request::builder()
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    let refused = svc.clone().oneshot(request).await.unwrap();
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(refused.headers()["grpc-status"], "8");
    assert_eq!(refused.headers()["grpc-retry-pushback-ms"], "1");
    gate.add_permits(1);
}

#[tokio::test(start_paused = true)]
async fn reads_criticality_and_retry_from_headers_and_context() {
    let layer = AdmissionLayer::new(AdmissionConfig::fixed(4)).unwrap();
    let svc = layer.layer(held(Arc::new(Semaphore::new(100))));
    let r = Request::builder()
        .header("x-palisade-criticality", "Critical")
        .body(())
        .unwrap();
    svc.clone().oneshot(r).await.unwrap();
    let mut r = Request::new(());
    r.extensions_mut()
        .insert(Context::background().with_value(Criticality::Sheddable));
    svc.clone().oneshot(r).await.unwrap();
    assert_eq!(layer.admission().snapshot().admitted, [1, 0, 1]);

    // A retry is refused while the limit is in use, a first attempt waits.
    let gate = Arc::new(Semaphore::new(0));
    let layer = AdmissionLayer::new(AdmissionConfig::fixed(1)).unwrap();
    let svc = layer.layer(held(gate.clone()));
    let _first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let r = Request::builder()
        .header("x-retry-attempt", "1")
        .body(())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(r).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut r = Request::new(());
    r.extensions_mut()
        .insert(Context::background().with_value(Attempt(2)));
    assert_eq!(
        svc.clone().oneshot(r).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(layer.admission().snapshot().refused[3], 2);
    let waiting = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    assert_eq!(layer.admission().snapshot().waiting, 1);
    gate.add_permits(2);
    assert_eq!(waiting.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_inbound_deadline_bounds_the_wait() {
    let gate = Arc::new(Semaphore::new(0));
    let layer =
        AdmissionLayer::new(AdmissionConfig::fixed(1).with_queue(10, Duration::from_secs(5)))
            .unwrap();
    let svc = Inbound::new()
        .layer()
        .layer(layer.layer(held(gate.clone())));
    let _first = tokio::spawn(svc.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let r = Request::builder()
        .header("x-request-timeout-ms", "100")
        .body(())
        .unwrap();
    let refused = svc.clone().oneshot(r).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(99) && waited <= Duration::from_millis(101),
        "{waited:?}"
    );
    assert_eq!(layer.admission().snapshot().refused[2], 1); // deadline
    gate.add_permits(1);
}
