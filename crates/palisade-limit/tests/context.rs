//! Waiting under a caller's context: deadlines bound the wait, cancellation ends it,
//! and nothing is left behind.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::time::Duration;

use palisade_clock::{Clock, TokioClock};
use palisade_context::Context;
use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig, WaitError};

#[tokio::test(start_paused = true)]
async fn a_bulkhead_wait_ends_at_the_deadline_with_its_cause() {
    let b = Bulkhead::new(BulkheadConfig::new(1).with_queue(4, Duration::from_secs(10))).unwrap();
    let _held = b.try_acquire().unwrap();
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(300));
    let start = TokioClock.now();
    let e = b.acquire_with(&ctx).await.unwrap_err();
    assert_eq!(TokioClock.now() - start, Duration::from_millis(300));
    assert!(e.cause().unwrap().is_deadline_exceeded(), "{e}");
    assert!(e.rejection().is_none());
    assert_eq!(b.snapshot().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_leaves_the_queue_at_once() {
    let b = Bulkhead::new(BulkheadConfig::new(1).with_queue(4, Duration::from_secs(10))).unwrap();
    let held = b.try_acquire_owned().unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.acquire_owned_with(&ctx).await.map(drop) })
    };
    while b.snapshot().waiting == 0 {
        tokio::task::yield_now().await;
    }
    guard.cancel();
    let e = waiter.await.unwrap().unwrap_err();
    assert!(matches!(e, WaitError::Cancelled(ref c) if c.is_canceled()));
    assert_eq!(b.snapshot().waiting, 0);
    drop(held);
    assert_eq!(b.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn an_ended_context_is_refused_before_queueing() {
    let b = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    drop(guard);
    assert!(matches!(
        b.acquire_with(&ctx).await,
        Err(WaitError::Cancelled(_))
    ));
    assert_eq!(b.snapshot().in_flight, 0);
    // Without a deadline, a free permit is taken at once.
    let permit = b.acquire_with(&Context::background()).await.unwrap();
    let e = b.acquire_with(&Context::background()).await.unwrap_err();
    assert!(matches!(e, WaitError::Rejected(ref full) if !full.is_timed_out()));
    assert_eq!(
        e.rejection().unwrap().strategy(),
        palisade_classify::Strategy::Bulkhead
    );
    drop(permit);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_wait_longer_than_the_deadline_fails_fast() {
    let l = RateLimiter::new(RateLimiterConfig::per_second(1).with_burst(1)).unwrap();
    l.check().unwrap();
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(500));
    let start = TokioClock.now();
    match l.until_ready_with(&ctx).await {
        Err(WaitError::Rejected(e)) => assert_eq!(e.retry_after(), Duration::from_secs(1)),
        other => panic!("expected a fast refusal, got {other:?}"),
    }
    assert_eq!(TokioClock.now(), start, "no time spent waiting");

    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(2));
    l.until_ready_with(&ctx).await.unwrap();
    assert_eq!(TokioClock.now() - start, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_wait_ends_when_the_context_is_cancelled() {
    let l = RateLimiter::new(RateLimiterConfig::per_second(1).with_burst(1)).unwrap();
    l.check().unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    let waiting = {
        let l = l.clone();
        tokio::spawn(async move { l.until_ready_with(&ctx).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    guard.cancel();
    assert!(matches!(
        waiting.await.unwrap(),
        Err(WaitError::Cancelled(_))
    ));
    // The cancelled wait took nothing: the next call is due at one second.
    tokio::time::sleep(Duration::from_millis(900)).await;
    l.check().unwrap();
}
