//! A pipeline on a clock of its own: a manual clock drives its timeouts and
//! every strategy in it, with no tokio time at all.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "retry",
    feature = "breaker",
    feature = "limit",
    feature = "clock"
))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration, State};
use palisade::classify::Strategy;
use palisade::clock::ManualClock;
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::RetryPolicyBuilder;
use palisade::{Context, Pipeline, TimeoutKind};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// Lets every task of the runtime run until it waits again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_manual_clock_drives_the_timeouts_the_retry_and_the_breaker_of_a_pipeline() {
    let clock = ManualClock::new();
    let breaker = Breaker::builder(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(3))
            .open(OpenDuration::fixed(Duration::from_secs(5)))
            .half_open_probes(1),
    )
    .clock(clock.clone())
    .build()
    .unwrap();
    let retry = RetryPolicyBuilder::with_clock(clock.clone())
        .backoff(
            Backoff::constant(10 * MS)
                .jitter(Jitter::None)
                .max_attempts(3)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let limiter =
        RateLimiter::with_clock(RateLimiterConfig::per_second(1000), clock.clone()).unwrap();
    let bulkhead = Bulkhead::with_clock(BulkheadConfig::new(4), clock.clone()).unwrap();
    let p = Pipeline::builder_with_clock("dep", clock.clone())
        .retry(retry)
        .breaker(breaker.clone())
        .rate_limiter(limiter)
        .bulkhead(bulkhead)
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let ctx = Context::background();

    // Three attempts that hang: each times out at 100 ms of the manual clock,
    // with 10 ms of backoff between them, and no tokio time passes.
    let calls = Arc::new(AtomicU32::new(0));
    let count = calls.clone();
    let run = tokio::spawn({
        let p = p.clone();
        async move {
            p.execute(&ctx, move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<Result<(), Boom>>()
            })
            .await
        }
    });
    for step in [100, 10, 100, 10, 100] {
        settle().await;
        clock.advance(step * MS);
    }
    let e = run.await.unwrap().unwrap_err();
    assert!(e.is_retries_exhausted(), "{e}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let last =
        std::error::Error::source(&e).and_then(|s| s.downcast_ref::<palisade::Error<Boom>>());
    assert_eq!(
        last.and_then(|l| l.timeout_kind()),
        Some(TimeoutKind::Attempt)
    );

    // Three timeouts in a row opened the manual-clock breaker; it half-opens
    // when the manual clock says so.
    assert_eq!(breaker.state(), State::Open);
    let ctx = Context::background();
    let refused = p
        .execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap_err();
    assert_eq!(refused.rejected_by(), Some(Strategy::CircuitBreaker));
    clock.advance(Duration::from_secs(5));
    p.execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap();
    assert_eq!(breaker.state(), State::Closed);
}
