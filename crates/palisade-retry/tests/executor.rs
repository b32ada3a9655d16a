//! The executor in virtual time: schedules, hints, deadlines, budgets, hedging,
//! cancellation and drop-safety.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use palisade_backoff::{Backoff, Jitter};
use palisade_classify::{Delivery, Idempotency, Outcome, Transient};
use palisade_clock::{Clock, TokioClock};
use palisade_context::Context;
use palisade_retry::{
    Hedging, Nested, RetryBudget, RetryConfig, RetryPolicy, StopReason, mark_retrying,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn plain(backoff: palisade_backoff::BackoffBuilder) -> Backoff {
    backoff.jitter(Jitter::None).build().unwrap()
}

fn policy(backoff: Backoff) -> RetryPolicy {
    RetryPolicy::builder().backoff(backoff).build().unwrap()
}

/// Records when each attempt starts, relative to the test's start.
#[derive(Clone)]
struct Log {
    start: palisade_clock::Timestamp,
    starts: Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl Log {
    fn new() -> Self {
        Log {
            start: TokioClock.now(),
            starts: Arc::default(),
        }
    }
    fn mark(&self) {
        let t = TokioClock.now() - self.start;
        self.starts.lock().unwrap().push(t);
    }
    fn starts(&self) -> Vec<u128> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis())
            .collect()
    }
    fn elapsed(&self) -> Duration {
        TokioClock.now() - self.start
    }
}

/// Sets a flag when dropped: shows that an attempt's future was dropped.
struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn the_schedule_is_followed_exactly() {
    let p = policy(plain(
        Backoff::exponential(ms(100))
            .max_delay(ms(500))
            .max_attempts(6),
    ));
    let log = Log::new();
    let err = p
        .retry(&Context::background(), |_| {
            log.mark();
            async { Err::<(), _>("down") }
        })
        .await
        .unwrap_err();
    assert_eq!(log.starts(), [0, 100, 300, 700, 1200, 1700]);
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert!(err.is_exhausted());
    assert_eq!(err.attempts(), 6);
    assert_eq!(err.into_last_error(), Some("down"));
    assert_eq!(p.snapshot().retries, 5);
    assert_eq!(p.snapshot().exhausted, 1);
}

#[tokio::test(start_paused = true)]
async fn success_stops_and_attempt_numbers_count() {
    let p = RetryPolicy::default();
    let numbers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let value = p
        .retry(&Context::background(), |attempt| {
            numbers.lock().unwrap().push((
                attempt.number(),
                attempt.is_first(),
                attempt.is_hedge(),
            ));
            async move {
                if attempt.number() < 2 {
                    Err("x")
                } else {
                    Ok(7)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 7);
    assert_eq!(
        *numbers.lock().unwrap(),
        [(1, true, false), (2, false, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_the_delay_and_is_clamped() {
    let p = policy(plain(
        Backoff::constant(ms(100))
            .max_delay(ms(1000))
            .max_attempts(4),
    ));
    let log = Log::new();
    let hints = [ms(300), ms(60_000), ms(0)];
    let err = p
        .retry_with(
            &Context::background(),
            &|r: &Result<(), usize>| match r {
                Ok(()) => Outcome::Success,
                Err(i) => Outcome::transient_after(hints[*i]),
            },
            |attempt| {
                log.mark();
                let i = attempt.number() as usize - 1;
                async move { Err::<(), _>(i.min(2)) }
            },
        )
        .await
        .unwrap_err();
    // 300 ms as asked; 60 s clamped to the 1 s maximum delay; 0 as asked.
    assert_eq!(log.starts(), [0, 300, 1300, 1300]);
    assert_eq!(err.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_respected_to_the_millisecond() {
    let p = policy(plain(Backoff::constant(ms(300)).max_attempts(100)));
    let (ctx, _guard) = Context::background().with_timeout(ms(1000));
    let log = Log::new();
    let err = p
        .retry(&ctx, |_| {
            log.mark();
            async {
                TokioClock.sleep(ms(50)).await;
                Err::<(), _>("slow failure")
            }
        })
        .await
        .unwrap_err();
    // Attempts end at 50, 400, 750; the next would start at 1100, after the
    // deadline, so the executor stops at once at 750 ms without sleeping.
    assert_eq!(log.starts(), [0, 350, 700]);
    assert_eq!(log.elapsed(), ms(750));
    assert_eq!(err.reason(), StopReason::DeadlineExceeded);
    assert!(err.is_deadline_exceeded());
    assert_eq!(err.last_error(), Some(&"slow failure"));
    assert_eq!(p.snapshot().deadline_exceeded, 1);

    // An attempt that would start exactly at the deadline is not started either.
    let (ctx, _guard) = Context::background().with_timeout(ms(900));
    let log = Log::new();
    let err = p
        .retry(&ctx, |_| {
            log.mark();
            async { Err::<(), _>("x") }
        })
        .await
        .unwrap_err();
    assert_eq!(log.starts(), [0, 300, 600]);
    assert_eq!(log.elapsed(), ms(600));
    assert!(err.is_deadline_exceeded());
}

#[tokio::test(start_paused = true)]
async fn an_ended_context_starts_nothing() {
    let p = RetryPolicy::default();
    let (ctx, guard) = Context::background().with_cancel();
    drop(guard);
    let calls = AtomicU32::new(0);
    let err = p
        .retry(&ctx, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ()>(()) }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(err.is_cancelled());
    assert_eq!(err.attempts(), 0);
    assert!(err.context_cause().unwrap().is_canceled());

    let (ctx, _guard) = Context::background().with_timeout(ms(10));
    TokioClock.sleep(ms(10)).await;
    let err = p
        .retry(&ctx, |_| async { Ok::<_, ()>(()) })
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded());
    assert_eq!(err.attempts(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancellation_during_a_sleep_stops_at_once() {
    let p = policy(plain(Backoff::constant(ms(10_000)).max_attempts(3)));
    let (ctx, guard) = Context::background().with_cancel();
    let log = Log::new();
    let canceller = tokio::spawn(async move {
        TokioClock.sleep(ms(250)).await;
        guard.cancel();
    });
    let err = p
        .retry(&ctx, |_| async { Err::<(), _>("down") })
        .await
        .unwrap_err();
    assert_eq!(log.elapsed(), ms(250));
    assert_eq!(err.reason(), StopReason::Cancelled);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.last_error(), Some(&"down"));
    assert!(err.context_cause().unwrap().is_canceled());
    assert_eq!(p.snapshot().cancelled, 1);
    canceller.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_counts_the_attempts_own_time() {
    let p = policy(plain(
        Backoff::constant(ms(100))
            .max_attempts(10)
            .max_elapsed(ms(1000)),
    ));
    let log = Log::new();
    let err = p
        .retry(&Context::background(), |_| {
            log.mark();
            async {
                TokioClock.sleep(ms(400)).await;
                Err::<(), _>("slow")
            }
        })
        .await
        .unwrap_err();
    // 0–400, 500–900, 1000–1400: a fourth would end the sleep at 1500 > 1000.
    assert_eq!(log.starts(), [0, 500, 1000]);
    assert_eq!(err.reason(), StopReason::ElapsedExhausted);
    assert!(err.is_exhausted());
}

#[tokio::test(start_paused = true)]
async fn the_taxonomy_decides() {
    let p = policy(plain(Backoff::constant(ms(1)).max_attempts(5)));
    let calls = AtomicU32::new(0);
    let classify = |r: &Result<u16, &'static str>| match r {
        Ok(503) => Outcome::transient(),
        Ok(_) => Outcome::Success,
        Err("bad request") => Outcome::Ignored,
        Err(_) => Outcome::Permanent,
    };
    let err = p
        .retry_with(&Context::background(), &classify, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<u16, _>("broken") }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
    assert_eq!(err.reason(), StopReason::NotRetryable);
    assert!(err.is_inner());
    assert_eq!(err.last_outcome(), Some(Outcome::Permanent));

    let err = p
        .retry_with(&Context::background(), &classify, |_| async {
            Err::<u16, _>("bad request")
        })
        .await
        .unwrap_err();
    assert_eq!(err.last_outcome(), Some(Outcome::Ignored));
    assert_eq!(err.attempts(), 1);

    // An `Ok` that is a failure is retried, and returned as it is when retries end.
    let got = p
        .retry_with(&Context::background(), &classify, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<u16, &str>(503) }
        })
        .await;
    assert_eq!(got.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn non_idempotent_requests_are_retried_only_when_safe() {
    let build = |allow| {
        RetryPolicy::builder()
            .backoff(plain(Backoff::constant(ms(1)).max_attempts(3)))
            .idempotency(Idempotency::NonIdempotent)
            .allow_non_idempotent(allow)
            .build()
            .unwrap()
    };
    let delivered = |d: Delivery| {
        move |r: &Result<(), ()>| match r {
            Ok(()) => Outcome::Success,
            Err(()) => Outcome::Transient(Transient::new().with_delivery(d)),
        }
    };
    let calls = AtomicU32::new(0);
    let count = || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), ()>(()) }
    };
    let ctx = Context::background();
    let err = build(false)
        .retry_with(&ctx, &delivered(Delivery::MaybeDelivered), |_| count())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::NotSafe);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 1);

    let err = build(false)
        .retry_with(&ctx, &delivered(Delivery::NotDelivered), |_| count())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

    build(true)
        .retry_with(&ctx, &delivered(Delivery::MaybeDelivered), |_| count())
        .await
        .unwrap_err();
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn nested_retries_do_not_multiply() {
    let inner = policy(plain(Backoff::constant(ms(1)).max_attempts(3)));
    let outer = inner.clone();
    let calls = AtomicU32::new(0);
    let ctx = Context::background();
    let err = outer
        .retry(&ctx, |_| {
            let marked = mark_retrying(&ctx);
            let inner = &inner;
            let calls = &calls;
            async move {
                inner
                    .retry(&marked, |_| {
                        calls.fetch_add(1, Ordering::SeqCst);
                        async { Err::<(), _>("down") }
                    })
                    .await
            }
        })
        .await
        .unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "3 outer × 1 inner");
    assert!(err.is_exhausted());
    let inner_err = err.into_last_error().unwrap();
    assert_eq!(inner_err.reason(), StopReason::OuterRetry);

    let multiplying = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(3)))
        .nested(Nested::Retry)
        .build()
        .unwrap();
    calls.store(0, Ordering::SeqCst);
    let _ = multiplying
        .retry(&mark_retrying(&ctx), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>("down") }
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn the_budget_runs_out_and_recovers() {
    // No share of first attempts, a floor of 1 retry per second over 10 s: 10 retries
    // per window.
    let budget = RetryBudget::builder()
        .retry_ratio(0.0)
        .min_retries_per_sec(1)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(2)))
        .budget(budget.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    let fail = |_| async { Err::<(), _>("down") };
    let mut reasons = Vec::new();
    for _ in 0..12 {
        reasons.push(p.retry(&ctx, fail).await.unwrap_err().reason());
    }
    assert_eq!(reasons[..10], [StopReason::AttemptsExhausted; 10]);
    assert_eq!(reasons[10..], [StopReason::BudgetExhausted; 2]);
    let snap = p.snapshot();
    assert_eq!(snap.rejected_by_budget, 2);
    let b = snap.budget.unwrap();
    assert_eq!((b.withdrawals(), b.available(), b.rejected()), (10, 0, 2));

    // As the window slides past the withdrawals, retries come back.
    TokioClock.sleep(Duration::from_secs(11)).await;
    assert_eq!(budget.snapshot().available(), 10);
    let err = p.retry(&ctx, fail).await.unwrap_err();
    assert_eq!(err.reason(), StopReason::AttemptsExhausted);
}

#[tokio::test(start_paused = true)]
async fn the_budget_allows_a_share_of_first_attempts() {
    let budget = RetryBudget::builder()
        .retry_ratio(0.5)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(2)))
        .budget(budget.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    for _ in 0..10 {
        p.retry(&ctx, |_| async { Ok::<_, ()>(()) }).await.unwrap();
    }
    // 10 first attempts: 5 retries; the failing calls deposit too.
    let mut retried = 0;
    for _ in 0..10 {
        let err = p
            .retry(&ctx, |_| async { Err::<(), _>(()) })
            .await
            .unwrap_err();
        if err.reason() == StopReason::AttemptsExhausted {
            retried += 1;
        }
    }
    // 20 deposits by the end allow 10 withdrawals; they come as deposits do.
    assert_eq!(retried, 10);
    assert_eq!(budget.snapshot().deposits(), 20);
}

#[tokio::test(start_paused = true)]
async fn hedging_returns_the_faster_attempt_and_cancels_the_slower() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(Hedging::fixed(ms(100)).build().unwrap())
        .build()
        .unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let log = Log::new();
    let value = p
        .retry(&Context::background(), |attempt| {
            log.mark();
            let flag = DropFlag(dropped.clone());
            async move {
                let _flag = flag;
                let took = if attempt.is_hedge() { ms(50) } else { ms(1000) };
                TokioClock.sleep(took).await;
                Ok::<_, ()>(attempt.number())
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 2, "the hedge answered");
    assert_eq!(log.starts(), [0, 100]);
    assert_eq!(log.elapsed(), ms(150));
    assert_eq!(dropped.load(Ordering::SeqCst), 2, "both attempts are gone");
    let snap = p.snapshot();
    assert_eq!((snap.hedges, snap.hedges_won), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn hedges_are_limited_and_draw_on_the_budget() {
    let budget = RetryBudget::builder()
        .retry_ratio(0.0)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(Hedging::fixed(ms(10)).max_hedges(3).build().unwrap())
        .budget(budget)
        .build()
        .unwrap();
    let log = Log::new();
    let slow = |_| {
        log.mark();
        async {
            TokioClock.sleep(ms(100)).await;
            Ok::<_, ()>(())
        }
    };
    p.retry(&Context::background(), slow).await.unwrap();
    assert_eq!(log.starts(), [0], "the empty budget allows no hedge");
    assert_eq!(p.snapshot().rejected_by_budget, 1);

    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(Hedging::fixed(ms(10)).max_hedges(3).build().unwrap())
        .build()
        .unwrap();
    let log = Log::new();
    let slow = |_| {
        log.mark();
        async {
            TokioClock.sleep(ms(100)).await;
            Ok::<_, ()>(())
        }
    };
    p.retry(&Context::background(), slow).await.unwrap();
    assert_eq!(log.starts(), [0, 10, 20, 30]);
    assert_eq!(log.elapsed(), ms(100), "the first attempt still wins");
}

#[tokio::test(start_paused = true)]
async fn a_failed_hedge_waits_for_the_others_then_retries() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(500)).max_attempts(2)))
        .hedging(Hedging::fixed(ms(100)).build().unwrap())
        .build()
        .unwrap();
    let log = Log::new();
    let err = p
        .retry(&Context::background(), |attempt| {
            log.mark();
            async move {
                let took = if attempt.is_hedge() { ms(50) } else { ms(300) };
                TokioClock.sleep(took).await;
                Err::<(), _>(attempt.number())
            }
        })
        .await
        .unwrap_err();
    // Round one: 0 (fails at 300) and a hedge at 100 (fails at 150); the round
    // ends with the last failure, at 300. Sleep 500. Round two at 800: the one
    // hedge of the call is spent.
    assert_eq!(log.starts(), [0, 100, 800]);
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.last_error(), Some(&3));
}

#[tokio::test(start_paused = true)]
async fn percentile_hedging_learns_the_latency() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(
            Hedging::percentile(50.0)
                .fallback(ms(1000))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    for _ in 0..32 {
        p.retry(&Context::background(), |_| async {
            TokioClock.sleep(ms(20)).await;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
    }
    assert_eq!(p.hedging().unwrap().current_delay(), ms(20));
}

/// Drops the retry future at each kind of await point (inside an attempt, inside a
/// backoff sleep, inside a hedged round) and checks that nothing is left running:
/// the attempts' futures are dropped, no task is alive, no timer fires later.
#[tokio::test(start_paused = true)]
async fn dropping_the_retry_future_leaves_nothing_running() {
    let hedged = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(100)).max_attempts(5)))
        .hedging(Hedging::fixed(ms(10)).max_hedges(2).build().unwrap())
        .budget(RetryBudget::new())
        .build()
        .unwrap();
    let plain_policy = policy(plain(Backoff::constant(ms(100)).max_attempts(5)));
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(60));
    for p in [&plain_policy, &hedged] {
        // Drop points: mid-attempt (5 ms), mid-hedged round (15 ms), mid-sleep
        // (60 ms), in the second round (130 ms).
        for drop_at in [5, 15, 60, 130] {
            let created = Arc::new(AtomicUsize::new(0));
            let dropped = Arc::new(AtomicUsize::new(0));
            let fut = p.retry(&ctx, |_| {
                created.fetch_add(1, Ordering::SeqCst);
                let flag = DropFlag(dropped.clone());
                async move {
                    let _flag = flag;
                    TokioClock.sleep(ms(50)).await;
                    Err::<(), _>("down")
                }
            });
            tokio::select! {
                _ = fut => panic!("the call should still be running at {drop_at} ms"),
                _ = TokioClock.sleep(ms(drop_at)) => {}
            }
            assert!(created.load(Ordering::SeqCst) > 0);
            assert_eq!(
                created.load(Ordering::SeqCst),
                dropped.load(Ordering::SeqCst),
                "an attempt outlived the retry future (drop at {drop_at} ms)"
            );
            let before = created.load(Ordering::SeqCst);
            TokioClock.sleep(Duration::from_secs(5)).await;
            assert_eq!(
                created.load(Ordering::SeqCst),
                before,
                "work went on after the drop"
            );
        }
    }
    drop((ctx, _guard));
    // The context's deadline timer, if it was started, ends with the context.
    palisade_test::assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn the_retry_future_is_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let p = RetryPolicy::builder()
        .hedging(Hedging::fixed(ms(10)).build().unwrap())
        .budget(RetryBudget::new())
        .build()
        .unwrap();
    let ctx = Context::background();
    let handle =
        tokio::spawn(async move { assert_send(p.retry(&ctx, |_| async { Ok::<_, ()>(1) })).await });
    assert_eq!(handle.await.unwrap().unwrap(), 1);
}

#[test]
fn bad_configuration_gives_clear_errors() {
    let err = |text: &str| {
        toml::from_str::<RetryConfig>(text)
            .unwrap()
            .build()
            .unwrap_err()
    };
    let e = err("[backoff]\ninitial = \"20s\"");
    assert_eq!(e.field(), "backoff.initial");
    assert_eq!(
        e.to_string(),
        "`backoff.initial` is 20s, allowed at most max_delay (10s)"
    );
    assert_eq!(
        err("[budget]\nretry_ratio = -1.0").field(),
        "budget.retry_ratio"
    );
    assert_eq!(err("[budget]\nwindow = \"10ms\"").field(), "budget.window");
    assert_eq!(err("[budget]\nbuckets = 0").field(), "budget.buckets");
    assert_eq!(
        err("[hedging]\npercentile = 120.0").field(),
        "hedging.percentile"
    );
    assert_eq!(
        err("idempotent = false\n[hedging]\ndelay = \"1ms\"").field(),
        "hedging"
    );
    let parse = toml::from_str::<RetryConfig>("[backof]\ninitial = \"1s\"").unwrap_err();
    assert!(parse.to_string().contains("backof"), "{parse}");
    let parse = toml::from_str::<RetryConfig>("[backoff]\ninitial = \"soon\"").unwrap_err();
    assert!(parse.to_string().contains("invalid duration"), "{parse}");
    assert!(
        toml::from_str::<RetryConfig>("nested = \"retry\"\nallow_non_idempotent = true")
            .unwrap()
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_hedge_delay_starts_every_attempt_at_once() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(
            Hedging::fixed(Duration::ZERO)
                .max_hedges(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let log = Log::new();
    // Every attempt fails at once: the hedges still start.
    let err = p
        .retry(&Context::background(), |attempt| {
            log.mark();
            async move { Err::<(), _>(attempt.number()) }
        })
        .await
        .unwrap_err();
    assert_eq!(log.starts(), [0, 0, 0]);
    assert_eq!(err.attempts(), 3);
    assert_eq!(p.snapshot().hedges, 2);

    // A slow primary and a fast hedge, all started together: the fast one wins.
    let log = Log::new();
    let value = p
        .retry(&Context::background(), |attempt| {
            log.mark();
            async move {
                TokioClock
                    .sleep(ms(100 / u64::from(attempt.number())))
                    .await;
                Ok::<_, ()>(attempt.number())
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(log.starts(), [0, 0, 0]);
    assert_eq!(log.elapsed(), ms(33));
}

#[tokio::test(start_paused = true)]
async fn a_context_marked_as_retrying_makes_hedging_make_one_attempt() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(3)))
        .hedging(Hedging::fixed(ms(10)).max_hedges(2).build().unwrap())
        .build()
        .unwrap();
    let log = Log::new();
    let slow = |_| {
        log.mark();
        async {
            TokioClock.sleep(ms(100)).await;
            Err::<(), _>("down")
        }
    };
    let err = p
        .retry(&mark_retrying(&Context::background()), slow)
        .await
        .unwrap_err();
    assert_eq!(log.starts(), [0]);
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.reason(), StopReason::OuterRetry);
    assert_eq!(p.snapshot().hedges, 0);

    // `Nested::Retry` hedges and retries as usual.
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(Hedging::fixed(ms(10)).max_hedges(2).build().unwrap())
        .nested(Nested::Retry)
        .build()
        .unwrap();
    let log = Log::new();
    let _ = p
        .retry(&mark_retrying(&Context::background()), |_| {
            log.mark();
            async {
                TokioClock.sleep(ms(100)).await;
                Err::<(), _>("down")
            }
        })
        .await;
    assert_eq!(log.starts(), [0, 10, 20]);
}

/// `Err` is a permanent failure, `Ok(503)` a transient one.
fn permanent_errors(r: &Result<u16, u32>) -> Outcome {
    match r {
        Ok(503) => Outcome::transient(),
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Permanent,
    }
}

#[tokio::test(start_paused = true)]
async fn a_hedge_failing_permanently_does_not_beat_a_primary_that_then_succeeds() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(1)))
        .hedging(Hedging::fixed(ms(100)).build().unwrap())
        .build()
        .unwrap();
    let log = Log::new();
    let value = p
        .retry_with(&Context::background(), &permanent_errors, |attempt| {
            log.mark();
            async move {
                if attempt.is_hedge() {
                    TokioClock.sleep(ms(50)).await;
                    Err(attempt.number())
                } else {
                    TokioClock.sleep(ms(300)).await;
                    Ok(200)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(value, 200);
    assert_eq!(log.starts(), [0, 100]);
    assert_eq!(log.elapsed(), ms(300), "the primary's success waited for");
    assert_eq!(p.snapshot().hedges_won, 0);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_first_permanent_failure_ends_the_call() {
    let p = RetryPolicy::builder()
        .backoff(plain(Backoff::constant(ms(1)).max_attempts(3)))
        .hedging(Hedging::fixed(ms(100)).max_hedges(2).build().unwrap())
        .build()
        .unwrap();
    let log = Log::new();
    // The primary fails transiently at 300 ms, the first hedge permanently at
    // 150 ms, the second hedge permanently at 250 ms.
    let err = p
        .retry_with(&Context::background(), &permanent_errors, |attempt| {
            log.mark();
            async move {
                match attempt.number() {
                    1 => {
                        TokioClock.sleep(ms(300)).await;
                        Ok(503)
                    }
                    n => {
                        TokioClock.sleep(ms(50)).await;
                        Err(n)
                    }
                }
            }
        })
        .await
        .unwrap_err();
    assert_eq!(log.starts(), [0, 100, 200]);
    assert_eq!(log.elapsed(), ms(300), "the last attempt was waited for");
    assert_eq!(err.last_error(), Some(&2));
    assert_eq!(err.last_outcome(), Some(Outcome::Permanent));
    assert_eq!(err.reason(), StopReason::NotRetryable, "not retried");
    assert_eq!(err.attempts(), 3);
}

/// A response whose drop is counted.
struct Response {
    status: u16,
    _body: DropFlag,
}

#[tokio::test(start_paused = true)]
async fn a_discarded_result_is_dropped_before_the_backoff_sleep() {
    let p = policy(plain(Backoff::constant(ms(1000)).max_attempts(2)));
    let dropped = Arc::new(AtomicUsize::new(0));
    let classify = |r: &Result<Response, ()>| match r {
        Ok(r) if r.status == 503 => Outcome::transient(),
        _ => Outcome::Success,
    };
    let background = Context::background();
    let call = p.retry_with(&background, &classify, |attempt| {
        let body = DropFlag(dropped.clone());
        async move {
            let status = if attempt.is_first() { 503 } else { 200 };
            Ok(Response {
                status,
                _body: body,
            })
        }
    });
    let during_sleep = async {
        TokioClock.sleep(ms(500)).await;
        dropped.load(Ordering::SeqCst)
    };
    let (got, seen) = tokio::join!(call, during_sleep);
    assert_eq!(seen, 1, "the 503 and its body were dropped before sleeping");
    assert_eq!(got.unwrap().status, 200);

    // Stopped by the context during the sleep, the call has no `Ok` left to
    // return: it fails with the reason and the last outcome.
    let (ctx, guard) = Context::background().with_cancel();
    let canceller = async {
        TokioClock.sleep(ms(500)).await;
        guard.cancel();
    };
    let call = p.retry_with(&ctx, &classify, |_| {
        let body = DropFlag(dropped.clone());
        async move {
            Ok(Response {
                status: 503,
                _body: body,
            })
        }
    });
    let (got, ()) = tokio::join!(call, canceller);
    let err = got.err().unwrap();
    assert_eq!(err.reason(), StopReason::Cancelled);
    assert!(err.last_error().is_none());
    assert!(err.last_outcome().unwrap().is_retryable());
}

#[test]
fn absurd_attempt_counts_are_refused_unless_max_elapsed_bounds_them() {
    let build = |b: palisade_backoff::BackoffBuilder| {
        RetryPolicy::builder().backoff(b.build().unwrap()).build()
    };
    let err = build(Backoff::constant(ms(10)).max_attempts(u32::MAX)).unwrap_err();
    assert_eq!(err.field(), "backoff.max_attempts");
    assert_eq!(
        err.to_string(),
        "`backoff.max_attempts` is 4294967295, allowed \
         from 1 to 100, or any number with backoff.max_elapsed set"
    );
    assert!(build(Backoff::constant(ms(10)).max_attempts(101)).is_err());
    assert!(build(Backoff::constant(ms(10)).max_attempts(100)).is_ok());
    assert!(
        build(
            Backoff::constant(ms(10))
                .max_attempts(u32::MAX)
                .max_elapsed(Duration::from_secs(60))
        )
        .is_ok()
    );
    let config = toml::from_str::<RetryConfig>("[backoff]\nmax_attempts = 1000").unwrap();
    assert_eq!(config.build().unwrap_err().field(), "backoff.max_attempts");
}

#[test]
fn a_zero_hedge_delay_from_configuration_is_parallel_mode() {
    let config =
        toml::from_str::<RetryConfig>("[hedging]\ndelay = \"0s\"\nmax_hedges = 2").unwrap();
    let policy = config.build().unwrap();
    let hedging = policy.hedging().unwrap();
    assert_eq!(hedging.current_delay(), Duration::ZERO);
    assert!(hedging.is_parallel());
    assert!(!Hedging::fixed(ms(1)).build().unwrap().is_parallel());
    assert!(
        !Hedging::percentile(90.0)
            .fallback(Duration::ZERO)
            .build()
            .unwrap()
            .is_parallel()
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_the_context_stops_during_its_sleep_is_not_counted_as_started() {
    let p = policy(plain(Backoff::constant(ms(1000)).max_attempts(3)));
    let (ctx, guard) = Context::background().with_cancel();
    let canceller = async {
        TokioClock.sleep(ms(500)).await;
        guard.cancel();
    };
    let (got, ()) = tokio::join!(p.retry(&ctx, |_| async { Err::<(), _>("down") }), canceller);
    assert_eq!(got.unwrap_err().reason(), StopReason::Cancelled);
    let snap = p.snapshot();
    assert_eq!((snap.retries, snap.cancelled), (0, 1));
}
