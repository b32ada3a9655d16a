//! Chaos: injected latency, errors and outcomes, behind a run-time switch.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "chaos", feature = "retry", feature = "breaker"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::chaos::Chaos;
use palisade::classify::Outcome;
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline, TimeoutKind};

const MS: Duration = Duration::from_millis(1);

fn ok(
    calls: &Arc<AtomicU32>,
) -> impl FnMut(Context) -> std::future::Ready<Result<u32, std::io::Error>> + use<> {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(1))
    }
}

#[tokio::test(start_paused = true)]
async fn the_switch_turns_injection_on_and_off() {
    let chaos = Chaos::builder().error_rate(1.0).build().unwrap();
    let p = Pipeline::builder("dep")
        .chaos(chaos.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(p.execute(&ctx, ok(&calls)).await.unwrap(), 1);
    chaos.set_enabled(true);
    let e = p.execute(&ctx, ok(&calls)).await.unwrap_err();
    assert!(e.is_injected());
    assert_eq!(e.outcome(), Outcome::transient());
    // The injected error replaced the call.
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    chaos.set_enabled(false);
    assert_eq!(p.execute(&ctx, ok(&calls)).await.unwrap(), 1);
    assert_eq!(chaos.snapshot().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn injected_latency_runs_inside_the_attempt_timeout() {
    let chaos = Chaos::builder()
        .latency(1.0, Duration::from_secs(1))
        .enabled(true)
        .build()
        .unwrap();
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .chaos(chaos)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let e = p
        .execute(&Context::background(), ok(&calls))
        .await
        .unwrap_err();
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Attempt));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn injected_failures_are_retried_and_counted_by_the_breaker() {
    let chaos = Chaos::builder()
        .replace_outcome(1.0, Outcome::transient())
        .enabled(true)
        .build()
        .unwrap();
    let breaker = Breaker::new(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(3)),
    )
    .unwrap();
    let backoff = Backoff::constant(MS)
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap();
    let p = Pipeline::builder("dep")
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .breaker(breaker.clone())
        .chaos(chaos.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    // Every attempt succeeds, but the strategies see transient failures: three
    // attempts, the last `Ok` returned, and the breaker open.
    let v = p.execute(&Context::background(), ok(&calls)).await.unwrap();
    assert_eq!((v, calls.load(Ordering::Relaxed)), (1, 3));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(chaos.snapshot().replaced, 3);
}

#[test]
fn rates_out_of_range_are_refused_by_field() {
    let e = Chaos::builder().error_rate(1.5).build().unwrap_err();
    assert_eq!(e.field(), "chaos.error_rate");
    let e = Chaos::builder().latency(-0.1, MS).build().unwrap_err();
    assert_eq!(e.field(), "chaos.latency.rate");
}

#[tokio::test(start_paused = true)]
async fn a_rate_injects_about_that_share_reproducibly() {
    let draws = || async {
        let chaos = Chaos::builder()
            .error_rate(0.25)
            .seed(42)
            .enabled(true)
            .build()
            .unwrap();
        let p = Pipeline::builder("dep")
            .chaos(chaos.clone())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        for _ in 0..1000 {
            let _ = p.execute(&Context::background(), ok(&calls)).await;
        }
        chaos.snapshot().failed
    };
    let first = draws().await;
    assert_eq!(first, draws().await, "the same seed, the same draws");
    assert!(
        (150..350).contains(&first),
        "{first} of 1000 at a rate of 0.25"
    );
}
