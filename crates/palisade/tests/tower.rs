//! The tower layers, driven with `tower-test` mocks.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "tower",
    feature = "retry",
    feature = "breaker",
    feature = "limit",
    feature = "classify"
))]

use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::classify::Strategy;
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::tower::{PipelineLayer, attempt_timeout, breaker, bulkhead, rate_limiter};
use palisade::{Pipeline, TimeoutKind};
use tower::{Layer, ServiceExt};
use tower_test::mock;

const MS: Duration = Duration::from_millis(1);

fn retry(attempts: u32) -> RetryPolicy {
    let backoff = Backoff::constant(10 * MS)
        .jitter(Jitter::None)
        .max_attempts(attempts)
        .build()
        .unwrap();
    RetryPolicy::builder().backoff(backoff).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_pipeline_layer_retries_with_a_clone_of_the_request() {
    let (service, mut handle) = mock::pair::<String, u32>();
    let pipeline = Pipeline::builder("mock").retry(retry(3)).build().unwrap();
    let service = PipelineLayer::new(pipeline).layer(service);
    let call = tokio::spawn(service.oneshot("GET /users/1".to_owned()));

    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, "GET /users/1");
    respond.send_error(std::io::Error::other("connection reset"));
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, "GET /users/1");
    respond.send_response(200);

    assert_eq!(call.await.unwrap().unwrap(), 200);
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_layer_times_out() {
    let (service, mut handle) = mock::pair::<String, u32>();
    let service = attempt_timeout(50 * MS).unwrap().layer(service);
    let call = tokio::spawn(service.oneshot("slow".to_owned()));
    let (_request, _respond) = handle.next_request().await.unwrap();
    // Never answered: the layer gives up after 50 ms.
    let e = call.await.unwrap().unwrap_err();
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Attempt));
}

#[tokio::test(start_paused = true)]
async fn the_breaker_layer_opens_and_rejects_without_calling() {
    let (service, mut handle) = mock::pair::<String, u32>();
    let config = BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(2));
    let b = Breaker::new(config).unwrap();
    let service = breaker(b.clone()).layer(service);
    for _ in 0..2 {
        let call = tokio::spawn(service.clone().oneshot("x".to_owned()));
        let (_request, respond) = handle.next_request().await.unwrap();
        respond.send_error(std::io::Error::other("503"));
        assert!(call.await.unwrap().unwrap_err().is_inner());
    }
    assert_eq!(b.state(), State::Open);
    // Open: not ready, so `load_shed` sheds the call.
    let shed = tower::ServiceBuilder::new()
        .load_shed()
        .service(service.clone());
    let e = shed.oneshot("x".to_owned()).await.unwrap_err();
    assert!(e.is::<tower::load_shed::error::Overloaded>(), "{e}");
    // A call made without asking for readiness is refused.
    let e = tower::Service::call(&mut service.clone(), "x".to_owned())
        .await
        .unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::CircuitBreaker));
    // The mock saw no third request.
    assert!(
        tokio::time::timeout(MS, handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_layer_queues_then_rejects_when_full() {
    let (service, mut handle) = mock::pair::<String, u32>();
    let config = BulkheadConfig::new(1).with_queue(1, 100 * MS);
    let limit = Bulkhead::new(config).unwrap();
    let service = bulkhead(limit.clone()).layer(service);
    // The first call holds the only slot.
    let first = tokio::spawn(service.clone().oneshot("1".to_owned()));
    let (_request, respond_first) = handle.next_request().await.unwrap();
    // The second waits in the queue; the third finds the queue full.
    let second = tokio::spawn(service.clone().oneshot("2".to_owned()));
    for _ in 0..100 {
        if limit.snapshot().waiting == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(limit.snapshot().waiting, 1, "the second call never queued");
    let e = service.clone().oneshot("3".to_owned()).await.unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::Bulkhead));
    // The slot passes to the queued call once the first is answered.
    respond_first.send_response(1);
    assert_eq!(first.await.unwrap().unwrap(), 1);
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request, "2");
    respond.send_response(2);
    assert_eq!(second.await.unwrap().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_rate_limiter_layer_rejects_over_the_rate() {
    let (service, mut handle) = mock::pair::<String, u32>();
    let config = RateLimiterConfig::new(1, Duration::from_secs(60));
    let service = rate_limiter(RateLimiter::new(config).unwrap()).layer(service);
    let call = tokio::spawn(service.clone().oneshot("1".to_owned()));
    let (_request, respond) = handle.next_request().await.unwrap();
    respond.send_response(1);
    assert_eq!(call.await.unwrap().unwrap(), 1);
    // No token: not ready, so `load_shed` sheds the call.
    let shed = tower::ServiceBuilder::new()
        .load_shed()
        .service(service.clone());
    let e = shed.oneshot("2".to_owned()).await.unwrap_err();
    assert!(e.is::<tower::load_shed::error::Overloaded>(), "{e}");
    // A call made without asking for readiness is refused.
    let e = tower::Service::call(&mut service.clone(), "3".to_owned())
        .await
        .unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::RateLimiter));
}
