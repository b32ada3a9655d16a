//! The tiers of a fallback chain, their triggers, their errors and compensation.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use palisade_test::assert_no_live_tasks_now;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade_classify::{AnyErrorIsTransient, ClassifyExt, Outcome, Rejection, Strategy};
use palisade_fallback::{
    CompensationRefused, Compensator, Detach, Fallback, FallbackError, Trigger,
};

#[derive(Debug, PartialEq)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl Error for Boom {}

#[tokio::test]
async fn success_passes_through_untouched() {
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .value_with(Trigger::any(), move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            0
        })
        .build();
    assert_eq!(
        chain.recover(&(), Ok(7), Outcome::Success).await.unwrap(),
        7
    );
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn triggers_choose_the_tier_by_class() {
    let chain: Fallback<&str, Boom> = Fallback::builder()
        .value(Trigger::transient(), "transient")
        .value(Trigger::rejected_by(Strategy::CircuitBreaker), "breaker")
        .value(Trigger::permanent(), "permanent")
        .build();
    let open = Outcome::Rejected(Rejection::new(Strategy::CircuitBreaker));
    let full = Outcome::Rejected(Rejection::new(Strategy::Bulkhead));
    let r = |o| chain.recover(&(), Err(Boom("x")), o);
    assert_eq!(r(Outcome::transient()).await.unwrap(), "transient");
    assert_eq!(r(open).await.unwrap(), "breaker");
    assert_eq!(r(Outcome::Permanent).await.unwrap(), "permanent");
    // No tier for a full bulkhead, nor for an ignored outcome: the original error.
    let e = r(full).await.unwrap_err();
    assert!(e.is_unhandled());
    assert_eq!(e.into_original(), Boom("x"));
    let e = r(Outcome::Ignored).await.unwrap_err();
    assert_eq!(e.to_string(), "boom: x");
}

#[tokio::test]
async fn predicate_triggers_and_classified_recovery() {
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .value(Trigger::when_err(|e: &Boom| e.0 == "cache miss"), 1)
        .value_with(Trigger::failures(), |f| {
            if f.error().is_some() {
                2
            } else {
                3 // an Ok classified as a failure
            }
        })
        .build();
    let classifier = AnyErrorIsTransient.ignore_err(|e: &Boom| e.0 == "cache miss");
    // The predicate fires on an ignored outcome that `failures()` would not accept.
    assert_eq!(
        chain
            .recover_with(&(), Err(Boom("cache miss")), &classifier)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        chain
            .recover_with(&(), Err(Boom("reset")), &classifier)
            .await
            .unwrap(),
        2
    );
    let ok_503 = AnyErrorIsTransient.transient_ok(|v: &u32| *v == 503);
    assert_eq!(chain.recover_with(&(), Ok(503), &ok_503).await.unwrap(), 3);
}

#[tokio::test]
async fn a_failing_source_keeps_the_original_as_source() {
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .source(Trigger::failures(), |_, _| async {
            Err::<u32, _>(Boom("backup down"))
        })
        .named("backup")
        .build();
    let e: FallbackError<Boom> = chain
        .recover(&(), Err(Boom("primary down")), Outcome::transient())
        .await
        .unwrap_err();
    assert!(!e.is_unhandled());
    assert_eq!(e.failed_tier(), Some("backup"));
    assert_eq!(e.tier_error().unwrap().to_string(), "boom: backup down");
    assert_eq!(
        e.to_string(),
        "fallback `backup` failed (boom: backup down) after: boom: primary down"
    );
    assert_eq!(e.source().unwrap().to_string(), "boom: primary down");
}

#[tokio::test]
async fn the_next_tier_answers_when_a_source_fails() {
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .source(Trigger::failures(), |_, _| async {
            Err::<u32, _>(Boom("no"))
        })
        .source(Trigger::failures(), |_, f| {
            let permanent = f.outcome() == Outcome::Permanent;
            async move { Ok::<u32, Boom>(if permanent { 10 } else { 20 }) }
        })
        .build();
    assert_eq!(
        chain
            .recover(&(), Err(Boom("x")), Outcome::Permanent)
            .await
            .unwrap(),
        10
    );
    // An `Ok` classified as a failure that no tier replaces is returned as it was.
    let none: Fallback<u32, Boom> = Fallback::builder()
        .source(Trigger::failures(), |_, _| async {
            Err::<u32, _>(Boom("no"))
        })
        .build();
    assert_eq!(
        none.recover(&(), Ok(503), Outcome::transient())
            .await
            .unwrap(),
        503
    );
}

/// A context whose detached form keeps the request id.
struct Ctx {
    request_id: u32,
}

impl Detach for Ctx {
    type Detached = u32;

    fn detach(&self) -> u32 {
        self.request_id
    }
}

#[tokio::test(start_paused = true)]
async fn compensation_runs_in_the_background_with_the_detached_context() {
    let compensator = Compensator::new();
    let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = recorded.clone();
    let chain: Fallback<&str, Boom, Ctx> = Fallback::builder()
        .compensate(
            Trigger::failures(),
            &compensator,
            move |request_id, failure: &palisade_fallback::Failure<'_, &str, Boom>| {
                let r = r.clone();
                let what = failure.error().map(|e| e.0).unwrap_or("ok");
                async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    r.lock().unwrap().push((request_id, what));
                }
            },
        )
        .value(Trigger::failures(), "accepted")
        .build();
    let answer = chain
        .recover(
            &Ctx { request_id: 42 },
            Err(Boom("charge")),
            Outcome::transient(),
        )
        .await;
    // The caller is answered at once; the work is done later.
    assert_eq!(answer.unwrap(), "accepted");
    assert!(recorded.lock().unwrap().is_empty());
    assert_eq!(compensator.snapshot().in_flight, 1);
    compensator.shutdown().await;
    assert_eq!(*recorded.lock().unwrap(), vec![(42, "charge")]);
    let s = compensator.snapshot();
    assert_eq!((s.in_flight, s.started, s.completed), (0, 1, 1));
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn compensation_is_bounded_and_refusal_is_a_failed_tier() {
    let compensator = Compensator::with_capacity(1).unwrap();
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .compensate(Trigger::failures(), &compensator, |(), _| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
        })
        .named("outbox")
        .build();
    let first = chain
        .recover(&(), Err(Boom("a")), Outcome::transient())
        .await
        .unwrap_err();
    assert!(first.is_compensating() && first.is_unhandled());
    let second = chain
        .recover(&(), Err(Boom("b")), Outcome::transient())
        .await
        .unwrap_err();
    assert_eq!(second.failed_tier(), Some("outbox"));
    assert!(!second.is_compensating());
    let refused = second
        .tier_error()
        .unwrap()
        .downcast_ref::<CompensationRefused>()
        .unwrap();
    assert_eq!(*refused, CompensationRefused::Full { capacity: 1 });
    assert_eq!(compensator.snapshot().refused, 1);
    compensator.shutdown().await;
    // After shutdown nothing new starts.
    let third = chain
        .recover(&(), Err(Boom("c")), Outcome::transient())
        .await
        .unwrap_err();
    assert!(
        third
            .tier_error()
            .unwrap()
            .to_string()
            .contains("shut down")
    );
    assert_no_live_tasks_now().await;
}

#[tokio::test]
async fn a_panicking_compensation_is_caught_and_counted() {
    let compensator = Compensator::new();
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .compensate(Trigger::failures(), &compensator, |(), _| async {
            panic!("compensation bug");
        })
        .build();
    let _ = chain.recover(&(), Err(Boom("a")), Outcome::Permanent).await;
    compensator.shutdown().await;
    let s = compensator.snapshot();
    assert_eq!((s.panicked, s.completed, s.in_flight), (1, 1, 0));
}

#[test]
fn compensation_without_a_runtime_is_refused_not_a_panic() {
    let compensator = Compensator::new();
    assert_eq!(
        compensator.spawn(async {}),
        Err(CompensationRefused::NoRuntime)
    );
    assert_eq!(
        Compensator::with_capacity(0).unwrap_err().to_string(),
        "`compensation.capacity` is 0, allowed at least 1"
    );
}

#[tokio::test]
async fn dropping_a_recovery_mid_source_releases_it() {
    let chain: Fallback<u32, Boom> = Fallback::builder()
        .source(Trigger::failures(), |_, _| {
            std::future::pending::<Result<u32, Boom>>()
        })
        .build();
    let fut = chain.recover(&(), Err(Boom("x")), Outcome::transient());
    let timed = tokio::time::timeout(Duration::from_millis(1), fut).await;
    assert!(timed.is_err());
    assert_no_live_tasks_now().await;
}

#[tokio::test]
async fn compensation_gets_the_values_but_not_the_cancellation() {
    use palisade_context::Context;
    #[derive(Debug, PartialEq)]
    struct OrderId(u32);

    let compensator = Compensator::new();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let chain: Fallback<u32, Boom, Context> = Fallback::builder()
        .compensate(
            Trigger::failures(),
            &compensator,
            move |ctx: Context, _: &palisade_fallback::Failure<'_, u32, Boom>| {
                let s = s.clone();
                async move {
                    tokio::task::yield_now().await;
                    *s.lock().unwrap() =
                        Some((ctx.get::<OrderId>().map(|o| o.0), ctx.is_cancelled()));
                }
            },
        )
        .build();
    let (request, guard) = Context::background().with_value(OrderId(9)).with_cancel();
    let e = chain
        .recover(&request, Err(Boom("charge")), Outcome::transient())
        .await
        .unwrap_err();
    assert!(e.is_compensating());
    // The request ends before the compensation runs; the compensation does not.
    guard.cancel();
    assert!(request.is_cancelled());
    compensator.shutdown().await;
    assert_eq!(*seen.lock().unwrap(), Some((Some(9), false)));
}
