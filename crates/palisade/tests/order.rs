//! The composition order: what each layer sees of the layers inside it.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "retry",
    feature = "breaker",
    feature = "limit",
    feature = "clock",
    feature = "classify"
))]

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::classify::{AnyErrorIsTransient, ClassifyExt, Outcome, Strategy};
use palisade::clock::{Clock, TokioClock};
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline, TimeoutKind};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug, PartialEq)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl std::error::Error for Boom {}

fn retry(attempts: u32, delay: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(
            Backoff::constant(delay)
                .jitter(Jitter::None)
                .max_attempts(attempts)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn breaker_after(failures: u32) -> Breaker {
    let config = BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(failures));
    Breaker::new(config).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_inside_the_retry_gives_each_attempt_its_own() {
    let p = Pipeline::builder("dep")
        .retry(retry(3, 10 * MS))
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let start = TokioClock.now();
    let v = p
        .execute(&Context::background(), move |_| {
            let n = c.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                if n < 3 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, Boom>(n)
            }
        })
        .await
        .unwrap();
    assert_eq!(v, 3);
    // Two attempts timed out on their own 100 ms, with 10 ms between attempts.
    assert_eq!(TokioClock.now() - start, 220 * MS);
}

#[tokio::test(start_paused = true)]
async fn retries_exhausted_keep_the_count_and_the_last_error() {
    let p = Pipeline::builder("dep")
        .retry(retry(3, 10 * MS))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let e = p
        .execute(&Context::background(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(Boom("unavailable")) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert!(e.is_retries_exhausted());
    assert_eq!(e.attempts(), Some(3));
    assert_eq!(e.inner_error(), Some(&Boom("unavailable")));
    assert_eq!(e.to_string(), "gave up after 3 attempts");
    assert_eq!(e.source().unwrap().to_string(), "boom: unavailable");
    assert!(e.outcome().is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_retried() {
    let p = Pipeline::builder("dep")
        .classifier(AnyErrorIsTransient.permanent_err(|e: &Boom| e.0 == "corrupt"))
        .retry(retry(3, 10 * MS))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let e = p
        .execute(&Context::background(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            async { Err::<(), _>(Boom("corrupt")) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(e.is_inner());
    assert_eq!(e.outcome(), Outcome::Permanent);
}

#[tokio::test(start_paused = true)]
async fn an_ok_the_classifier_calls_a_failure_is_retried_and_returned_last() {
    let p = Pipeline::builder("dep")
        .classifier(AnyErrorIsTransient.transient_ok(|v: &u16| *v == 503))
        .retry(retry(3, 10 * MS))
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let v = p
        .execute(&Context::background(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            async { Ok::<u16, Boom>(503) }
        })
        .await
        .unwrap();
    assert_eq!((v, calls.load(Ordering::Relaxed)), (503, 3));
}

#[tokio::test(start_paused = true)]
async fn a_breaker_inside_the_retry_counts_each_attempt() {
    let breaker = breaker_after(3);
    let p = Pipeline::builder("dep")
        .retry(retry(3, 10 * MS))
        .breaker(breaker.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let failing = move |_| {
        c.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), _>(Boom("unavailable")) }
    };
    let ctx = Context::background();
    let e = p.execute(&ctx, failing.clone()).await.unwrap_err();
    assert!(e.is_retries_exhausted());
    // One execution, three attempts, three failures: the breaker opened.
    assert_eq!(breaker.state(), State::Open);

    // The next execution is refused by the breaker without reaching the call, and
    // a rejection is not retried.
    let e = p.execute(&ctx, failing).await.unwrap_err();
    assert!(e.is_rejected() && e.is_breaker_open());
    assert_eq!(e.rejected_by(), Some(Strategy::CircuitBreaker));
    assert!(e.rejection().unwrap().retry_after().is_some());
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_spans_every_retry() {
    let p = Pipeline::builder("dep")
        .total_timeout(250 * MS)
        .retry(retry(10, 10 * MS))
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let start = TokioClock.now();
    let e = p
        .execute(&Context::background(), |_| {
            std::future::pending::<Result<(), Boom>>()
        })
        .await
        .unwrap_err();
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Total));
    assert_eq!(TokioClock.now() - start, 250 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_and_a_rate_limit_reject() {
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let p = Pipeline::builder("dep")
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    let gate_rx = std::sync::Mutex::new(Some(gate_rx));
    let held = p.execute(&ctx, |_| {
        let rx = gate_rx.lock().unwrap().take().unwrap();
        async move {
            let _ = rx.await;
            Ok::<_, Boom>(1)
        }
    });
    let second = async {
        tokio::task::yield_now().await;
        let e = p
            .execute(&ctx, |_| async { Ok::<_, Boom>(2) })
            .await
            .unwrap_err();
        gate_tx.send(()).unwrap();
        e
    };
    let (first, e) = tokio::join!(held, second);
    assert_eq!(first.unwrap(), 1);
    assert_eq!(e.rejected_by(), Some(Strategy::Bulkhead));
    // The permit came back with the first call.
    assert_eq!(
        p.execute(&ctx, |_| async { Ok::<_, Boom>(3) })
            .await
            .unwrap(),
        3
    );

    let limited = Pipeline::builder("dep")
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1)).unwrap())
        .build()
        .unwrap();
    limited
        .execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap();
    let e = limited
        .execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap_err();
    assert_eq!(e.rejected_by(), Some(Strategy::RateLimiter));
    assert!(e.outcome().retry_after().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_execution_releases_its_permit_and_counts_nothing() {
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let breaker = breaker_after(1);
    let p = Pipeline::builder("dep")
        .breaker(breaker.clone())
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    let hung = p.execute(&ctx, |_| std::future::pending::<Result<(), Boom>>());
    assert!(tokio::time::timeout(MS, hung).await.is_err());
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.snapshot().calls, 0);
    p.execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_snapshot_shows_the_breaker_and_the_future_is_send() {
    let p = Pipeline::builder("users-api")
        .retry(retry(2, MS))
        .breaker(breaker_after(2))
        .bulkhead(Bulkhead::new(BulkheadConfig::new(4)).unwrap())
        .build()
        .unwrap();
    assert!(p.snapshot().is_healthy());
    // The execution future is `Send`: it can be spawned.
    let p2 = p.clone();
    let handle = tokio::spawn(async move {
        let ctx = Context::background();
        p2.execute(&ctx, |_| async { Err::<(), _>(Boom("down")) })
            .await
    });
    assert!(handle.await.unwrap().unwrap_err().is_retries_exhausted());
    let s = p.snapshot();
    assert_eq!(s.name, "users-api");
    assert_eq!(s.breaker.unwrap().state, State::Open);
    assert!(!s.is_healthy());
    assert_eq!(s.bulkhead.unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn every_call_deposits_into_the_retry_budget_once() {
    let budget = palisade::retry::RetryBudget::new();
    let p = Pipeline::builder("dep")
        .retry(
            RetryPolicy::builder()
                .budget(budget.clone())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let ctx = Context::background();
    for _ in 0..5 {
        p.execute(&ctx, |_| async { Ok::<_, Boom>(()) })
            .await
            .unwrap();
    }
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    p.execute(&ctx, move |_| {
        let n = c.fetch_add(1, Ordering::Relaxed);
        async move { if n == 0 { Err(Boom("reset")) } else { Ok(()) } }
    })
    .await
    .unwrap();
    let s = budget.snapshot();
    assert_eq!((s.deposits(), s.withdrawals()), (6, 1));
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

/// A call through a pipeline with a full one-slot bulkhead: the first call holds
/// the slot until `release` is sent, the second runs while it is held.
async fn while_the_slot_is_held<T>(
    p: &Pipeline,
    second: impl std::future::Future<Output = T>,
) -> T {
    let ctx = Context::background();
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let held = std::sync::Mutex::new(Some(held));
    let first = p.execute(&ctx, |_| {
        let rx = held.lock().unwrap().take().unwrap();
        async move {
            let _ = rx.await;
            Ok::<_, Boom>(1)
        }
    });
    let second = async {
        tokio::task::yield_now().await;
        let out = second.await;
        release.send(()).unwrap();
        out
    };
    let (first, out) = tokio::join!(first, second);
    assert_eq!(first.unwrap(), 1);
    out
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_inside_the_pipeline_counts_each_call_once() {
    let ctx = Context::background();

    // No queue: the refused call counts one rejection, not two.
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1)).unwrap();
    let p = Pipeline::builder("dep")
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let e = while_the_slot_is_held(&p, p.execute(&ctx, |_| async { Ok::<_, Boom>(2) })).await;
    assert_eq!(e.unwrap_err().rejected_by(), Some(Strategy::Bulkhead));
    let s = bulkhead.snapshot();
    assert_eq!((s.rejected, s.timed_out), (1, 0));

    // A queue whose wait runs out: one timeout, no rejection.
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1).with_queue(4, 10 * MS)).unwrap();
    let p = Pipeline::builder("dep")
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let e = while_the_slot_is_held(&p, p.execute(&ctx, |_| async { Ok::<_, Boom>(2) })).await;
    assert_eq!(e.unwrap_err().rejected_by(), Some(Strategy::Bulkhead));
    let s = bulkhead.snapshot();
    assert_eq!((s.rejected, s.timed_out), (0, 1));

    // A call that waits in the queue and is then admitted is no refusal at all.
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1).with_queue(4, 10 * MS)).unwrap();
    let p = Pipeline::builder("dep")
        .bulkhead(bulkhead.clone())
        .build()
        .unwrap();
    let second = async {
        let mut waited = Box::pin(p.execute(&ctx, |_| async { Ok::<_, Boom>(2) }));
        // It joins the queue; the first call's release lets it in.
        let queued = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(waited.as_mut(), cx).is_pending())
        })
        .await;
        (queued, waited)
    };
    let (queued, waited) = while_the_slot_is_held(&p, second).await;
    assert!(queued, "the second call waits in the queue");
    assert_eq!(waited.await.unwrap(), 2);
    let s = bulkhead.snapshot();
    assert_eq!((s.rejected, s.timed_out), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_call_refused_by_a_full_bulkhead_is_never_made() {
    let ctx = Context::background();
    let made = Arc::new(AtomicU32::new(0));
    // A queue whose wait runs out, for the first attempt and for a retry.
    let bulkhead = Bulkhead::new(BulkheadConfig::new(1).with_queue(4, 10 * MS)).unwrap();
    let retry = retry(2, MS);
    for p in [
        Pipeline::builder("dep")
            .bulkhead(bulkhead.clone())
            .build()
            .unwrap(),
        Pipeline::builder("dep")
            .retry(retry.clone())
            .bulkhead(bulkhead.clone())
            .build()
            .unwrap(),
    ] {
        let count = made.clone();
        let e = while_the_slot_is_held(
            &p,
            p.execute(&ctx, move |_| {
                count.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, Boom>(2u8) }
            }),
        )
        .await;
        assert_eq!(e.unwrap_err().rejected_by(), Some(Strategy::Bulkhead));
    }
    assert_eq!(made.load(Ordering::Relaxed), 0, "a refused call was made");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_panics_before_it_returns_its_future_is_a_counted_panic() {
    let breaker = Breaker::new(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(3)),
    )
    .unwrap();
    let retry = retry(3, MS);
    let p = Pipeline::builder("dep")
        .retry(retry)
        .breaker(breaker.clone())
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ctx = Context::background();
    // On the first attempt, inline.
    let e = p
        .execute(&ctx, |_| -> std::future::Ready<Result<u8, Boom>> {
            panic!("no future for you")
        })
        .await
        .unwrap_err();
    assert!(e.is_panic(), "{e}");
    // On a retried attempt, in the executor.
    let mut n = 0;
    let e = p
        .execute(&ctx, |_| {
            n += 1;
            if n == 2 {
                panic!("no second future");
            }
            std::future::ready(Err::<u8, _>(Boom("first")))
        })
        .await
        .unwrap_err();
    assert!(e.is_panic(), "{e}");
    assert_eq!(n, 2, "a panic is permanent: no third attempt");
    // Both panics were failures to the breaker (the transient error between
    // them too), so its three-failure rule opened it.
    assert_eq!(breaker.state(), State::Open);
}
