//! The single-strategy tower layers as services of their own: one flat error,
//! classifiers, and backpressure through `poll_ready` (with tower's `load_shed`).
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "tower",
    feature = "retry",
    feature = "breaker",
    feature = "limit",
    feature = "classify"
))]

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::classify::{Outcome, Strategy};
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::tower::{
    LayerError, PipelineLayer, attempt_timeout, breaker, bulkhead, rate_limiter, retry,
};
use palisade::{BoxError, Pipeline};
use tokio::sync::oneshot;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

const MS: Duration = Duration::from_millis(1);

fn policy(attempts: u32) -> RetryPolicy {
    let backoff = Backoff::constant(10 * MS)
        .jitter(Jitter::None)
        .max_attempts(attempts)
        .build()
        .unwrap();
    RetryPolicy::builder().backoff(backoff).build().unwrap()
}

fn trips_after(failures: u32) -> Breaker {
    let config = BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(failures));
    Breaker::new(config).unwrap()
}

/// 503 is a transient failure; other statuses succeed; an error is transient.
fn status(r: &Result<u16, BoxError>) -> Outcome {
    match r {
        Ok(503) | Err(_) => Outcome::transient(),
        Ok(_) => Outcome::Success,
    }
}

/// A service that counts its calls and answers `Ok(200)`.
fn counted() -> (
    Arc<AtomicUsize>,
    impl Service<u32, Response = u16, Error = std::io::Error, Future: Send> + Clone + Send + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let svc = service_fn(move |_req: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Ok::<u16, std::io::Error>(200) }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn stacked_layers_fail_with_one_flat_error() {
    let (service, mut handle) = mock::pair::<String, u32>();
    // retry ∘ breaker ∘ attempt_timeout over a service failing with BoxError.
    let service = ServiceBuilder::new()
        .layer(retry(policy(2)))
        .layer(breaker(trips_after(100)).name("users"))
        .layer(attempt_timeout(50 * MS).unwrap().name("users.attempt"))
        .service(service);
    let call = tokio::spawn(service.oneshot("slow".to_owned()));
    // Two attempts, neither answered: each times out, and the retry retries the
    // timeout from below.
    let (_r1, _s1) = handle.next_request().await.unwrap();
    let (_r2, _s2) = handle.next_request().await.unwrap();
    let e: LayerError<BoxError> = call.await.unwrap().unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(e.layer(), Some("users.attempt"));
    assert_eq!(e.timeout_kind(), Some(palisade::TimeoutKind::Attempt));

    // The inner error arrives flat too.
    let (service, mut handle) = mock::pair::<String, u32>();
    let service = ServiceBuilder::new()
        .layer(breaker(trips_after(100)))
        .layer(attempt_timeout(50 * MS).unwrap())
        .service(service);
    let call = tokio::spawn(service.oneshot("x".to_owned()));
    let (_r, send) = handle.next_request().await.unwrap();
    send.send_error(std::io::Error::other("reset"));
    let e: LayerError<BoxError> = call.await.unwrap().unwrap_err();
    assert!(e.is_inner());
    assert_eq!(e.into_inner().unwrap().to_string(), "reset");
}

#[tokio::test(start_paused = true)]
async fn an_ok_503_through_retry_and_breaker_is_retried_and_counted() {
    let (service, mut handle) = mock::pair::<String, u16>();
    let b = trips_after(100);
    let service = ServiceBuilder::new()
        .layer(retry(policy(3)).classifier(status))
        .layer(breaker(b.clone()).classifier(status))
        .service(service);
    let call = tokio::spawn(service.oneshot("GET /".to_owned()));
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, "GET /");
    send.send_response(503);
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, "GET /");
    send.send_response(200);
    assert_eq!(call.await.unwrap().unwrap(), 200);
    let snapshot = b.snapshot();
    assert_eq!(snapshot.calls, 2);
    assert_eq!(snapshot.failures, 1, "the 503 counts as a failure");
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_is_shed_by_load_shed_without_calling_the_inner_service() {
    let (calls, svc) = counted();
    let b = trips_after(1);
    b.open_for(Duration::from_secs(30));
    assert_eq!(b.state(), State::Open);
    let mut service = ServiceBuilder::new()
        .load_shed()
        .layer(breaker(b.clone()))
        .service(svc);
    let e = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(
        e.is::<tower::load_shed::error::Overloaded>(),
        "shed, not refused: {e}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the inner service was called"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_makes_the_service_ready_again_when_the_open_duration_ends() {
    let (calls, svc) = counted();
    let b = trips_after(1);
    b.open_for(Duration::from_secs(5));
    let mut service = breaker(b.clone()).layer(svc);
    {
        let mut ready = tokio_test::task::spawn(poll_fn(|cx| service.poll_ready(cx)));
        assert!(ready.poll().is_pending(), "open: not ready");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!ready.is_woken(), "woken before the open duration ended");
        assert!(ready.poll().is_pending());
        tokio::time::advance(Duration::from_secs(1) + MS).await;
        assert!(ready.is_woken(), "not woken when the open duration ended");
        assert!(matches!(ready.poll(), std::task::Poll::Ready(Ok(()))));
    }
    // The probe it reserved is the next call.
    assert_eq!(service.call(1).await.unwrap(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_ne!(b.state(), State::Open, "the probe went through");
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_is_not_ready_and_wakes_when_a_call_ends() {
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(parking_lot::Mutex::new(Some(released)));
    let svc = service_fn(move |_req: u32| {
        let wait = released.lock().take();
        async move {
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            Ok::<u32, std::io::Error>(7)
        }
    });
    let limit = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let layer = bulkhead(limit.clone());
    let mut first = layer.layer(svc.clone());
    let mut second = layer.layer(svc);

    first.ready().await.unwrap();
    let call = tokio::spawn(first.call(1));
    assert_eq!(limit.snapshot().in_flight, 1);

    let mut ready = tokio_test::task::spawn(poll_fn(|cx| second.poll_ready(cx)));
    assert!(ready.poll().is_pending(), "full: not ready");
    assert!(!ready.is_woken());
    release.send(()).unwrap();
    // Bounded: the first call ends within a few scheduler turns.
    for _ in 0..100 {
        if ready.is_woken() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(ready.is_woken(), "not woken when the call ended");
    assert!(matches!(ready.poll(), std::task::Poll::Ready(Ok(()))));
    drop(ready);
    assert_eq!(call.await.unwrap().unwrap(), 7);
    assert_eq!(second.call(2).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_is_shed_by_load_shed() {
    let (calls, svc) = counted();
    let limit = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let layer = bulkhead(limit.clone());
    let mut holder = layer.layer(svc.clone());
    holder.ready().await.unwrap(); // reserves the only permit
    let mut service = ServiceBuilder::new().load_shed().layer(layer).service(svc);
    let e = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(e.is::<tower::load_shed::error::Overloaded>(), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The reserved permit goes back with its service.
    drop(holder);
    assert_eq!(limit.snapshot().in_flight, 0);
    assert_eq!(service.ready().await.unwrap().call(1).await.unwrap(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_clone_does_not_carry_the_reserved_permit() {
    let (_calls, svc) = counted();
    let limit = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let mut service = bulkhead(limit.clone()).layer(svc);
    service.ready().await.unwrap();
    assert_eq!(limit.snapshot().in_flight, 1);
    let mut clone = service.clone();
    let mut ready = tokio_test::task::spawn(poll_fn(|cx| clone.poll_ready(cx)));
    assert!(
        ready.poll().is_pending(),
        "the clone has no permit of its own"
    );
    // The original's call ends and wakes the clone.
    assert_eq!(service.call(1).await.unwrap(), 200);
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiter_without_a_token_is_not_ready_until_the_next_one() {
    let (calls, svc) = counted();
    let limiter = RateLimiter::new(RateLimiterConfig::new(1, Duration::from_secs(1))).unwrap();
    let mut service = rate_limiter(limiter).layer(svc);
    assert_eq!(service.ready().await.unwrap().call(1).await.unwrap(), 200);
    {
        let mut ready = tokio_test::task::spawn(poll_fn(|cx| service.poll_ready(cx)));
        assert!(ready.poll().is_pending(), "no token: not ready");
        tokio::time::advance(Duration::from_secs(1) + MS).await;
        assert!(ready.is_woken());
        assert!(ready.poll().is_ready());
    }
    assert_eq!(service.call(2).await.unwrap(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_refusal_names_its_layer() {
    let (_calls, svc) = counted();
    let limit = Bulkhead::new(BulkheadConfig::new(1).with_queue(1, 10 * MS)).unwrap();
    let layer = bulkhead(limit.clone()).name("db");
    let mut holder = layer.layer(svc.clone());
    holder.ready().await.unwrap();
    // The queue's wait runs out: ready, and the call is refused at once.
    let e = layer.layer(svc).oneshot(1).await.unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::Bulkhead));
    assert_eq!(e.layer(), Some("db"));
    assert_eq!(e.to_string().split(':').next(), Some("db"));
}

#[tokio::test(start_paused = true)]
async fn the_pipeline_layer_is_not_ready_while_its_breaker_is_open() {
    let (calls, svc) = counted();
    let b = trips_after(1);
    let pipeline = Pipeline::builder("users")
        .breaker(b.clone())
        .build()
        .unwrap();
    let mut service = ServiceBuilder::new()
        .load_shed()
        .layer(PipelineLayer::new(pipeline.clone()))
        .service(svc.clone());
    b.open_for(Duration::from_secs(5));
    let e = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(e.is::<tower::load_shed::error::Overloaded>(), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Ready again when the open duration ends.
    let mut plain = PipelineLayer::new(pipeline).layer(svc);
    let mut ready =
        tokio_test::task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut plain, cx)));
    assert!(ready.poll().is_pending());
    tokio::time::advance(Duration::from_secs(5) + MS).await;
    assert!(ready.is_woken());
    assert!(ready.poll().is_ready());
}

#[tokio::test(start_paused = true)]
async fn the_pipeline_layer_is_not_ready_while_its_bulkhead_is_full() {
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(parking_lot::Mutex::new(Some(released)));
    let svc = service_fn(move |_req: u32| {
        let wait = released.lock().take();
        async move {
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            Ok::<u32, std::io::Error>(7)
        }
    });
    let limit = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let pipeline = Pipeline::builder("db")
        .bulkhead(limit.clone())
        .build()
        .unwrap();
    let layer = PipelineLayer::new(pipeline);
    let mut first = layer.layer(svc.clone());
    let mut second = layer.layer(svc);
    let call = tokio::spawn(first.ready().await.unwrap().call(1));
    for _ in 0..100 {
        if limit.snapshot().in_flight == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(limit.snapshot().in_flight, 1);
    let mut ready =
        tokio_test::task::spawn(poll_fn(|cx| Service::<u32>::poll_ready(&mut second, cx)));
    assert!(ready.poll().is_pending(), "full: not ready");
    release.send(()).unwrap();
    assert_eq!(call.await.unwrap().unwrap(), 7);
    assert!(ready.is_woken(), "not woken when the call ended");
    assert!(ready.poll().is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_call_without_poll_ready_is_still_guarded() {
    let (calls, svc) = counted();
    let b = trips_after(1);
    b.open_for(Duration::from_secs(5));
    let mut service = breaker(b).layer(svc);
    // Against tower's contract, but refused rather than let through.
    let e = service.call(1).await.unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::CircuitBreaker));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[test]
fn services_sharing_a_full_bulkhead_on_two_threads_lose_no_wake_up() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let limit = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
        let layer = bulkhead(limit.clone());
        let svc = service_fn(|i: u32| async move {
            tokio::task::yield_now().await;
            Ok::<u32, std::io::Error>(i)
        });
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let mut service = layer.layer(svc);
                tokio::spawn(async move {
                    for i in 0..200 {
                        service.ready().await.unwrap();
                        assert_eq!(service.call(i).await.unwrap(), i);
                    }
                })
            })
            .collect();
        // A guard against a hang, not a measurement: a lost wake-up parks a task
        // for good.
        tokio::time::timeout(Duration::from_secs(30), async {
            for task in tasks {
                task.await.unwrap();
            }
        })
        .await
        .expect("a service waiting for the bulkhead was never woken");
        assert_eq!(limit.snapshot().in_flight, 0);
    });
}
