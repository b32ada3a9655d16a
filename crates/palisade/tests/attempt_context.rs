//! Each attempt runs under a child context of its own: its deadline is the real
//! budget of the attempt, and it is cancelled, with a cause that says why, the
//! moment the pipeline stops waiting for the attempt. In virtual time.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "retry", feature = "clock"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::context::{Abandoned, Cause};
use palisade::retry::{Hedging, RetryPolicy};
use palisade::{Context, Pipeline};

const MS: Duration = Duration::from_millis(1);

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// The causes seen by tasks that held each attempt's context, in attempt order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Option<Cause>>>>);

impl Seen {
    /// Spawns a task that holds `ctx` and writes down its cause once it ends.
    fn watch(&self, ctx: Context) {
        let slot = {
            let mut seen = self.0.lock().unwrap();
            seen.push(None);
            seen.len() - 1
        };
        let seen = self.0.clone();
        tokio::spawn(async move {
            ctx.cancelled().await;
            seen.lock().unwrap()[slot] = ctx.cause();
        });
    }

    async fn causes(&self) -> Vec<Option<Cause>> {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        self.0.lock().unwrap().clone()
    }
}

fn reason(cause: &Option<Cause>) -> Option<Abandoned> {
    cause.as_ref().and_then(Cause::abandoned_by)
}

fn attempts(n: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(
            Backoff::constant(MS)
                .jitter(Jitter::None)
                .max_attempts(n)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

async fn remaining_inside(p: &Pipeline, ctx: &Context) -> Option<Duration> {
    p.execute(ctx, |ctx| async move { Ok::<_, Boom>(ctx.remaining()) })
        .await
        .unwrap()
}

/// `remaining` is `want`, but for the few nanoseconds the attempt's deadline is
/// rounded down by (never up).
#[track_caller]
fn about(remaining: Option<Duration>, want: Duration) {
    let got = remaining.expect("the call sees a deadline");
    assert!(
        got <= want && want - got <= Duration::from_nanos(3),
        "the call sees {got:?}, not {want:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_call_sees_the_shortest_of_the_callers_deadline_the_total_and_the_attempt_timeout() {
    let (caller, _guard) = Context::background().with_timeout(Duration::from_secs(1));
    let p = Pipeline::builder("dep")
        .total_timeout(500 * MS)
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    about(remaining_inside(&p, &caller).await, 100 * MS);

    let p = Pipeline::builder("dep")
        .total_timeout(50 * MS)
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    about(remaining_inside(&p, &caller).await, 50 * MS);

    let (short, _guard) = Context::background().with_timeout(30 * MS);
    about(remaining_inside(&p, &short).await, 30 * MS);

    let p = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let background = Context::background();
    about(
        remaining_inside(&p, &background).await,
        Duration::from_secs(10),
    );
    let plain = Pipeline::builder("dep").build().unwrap();
    assert_eq!(remaining_inside(&plain, &background).await, None);
}

#[tokio::test(start_paused = true)]
async fn a_retried_attempt_sees_what_remains_of_the_total_timeout() {
    let p = Pipeline::builder("dep")
        .total_timeout(500 * MS)
        .attempt_timeout(300 * MS)
        .retry(attempts(3))
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let ctx = Context::background();
    let _ = p
        .execute(&ctx, move |ctx| {
            record.lock().unwrap().push(ctx.remaining());
            async move {
                tokio::time::sleep(200 * MS).await;
                Err::<(), _>(Boom)
            }
        })
        .await;
    let seen = seen.lock().unwrap().clone();
    about(seen[0], 300 * MS);
    // 200 ms and a 1 ms backoff later, 299 ms of the total remain.
    about(seen[1], 299 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_times_out_has_its_context_cancelled_with_attempt_timeout() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let (caller, _guard) = Context::background().with_cancel();
    let e = p
        .execute(&caller, move |ctx| {
            watch.watch(ctx.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Boom>(())
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    let causes = seen.causes().await;
    assert_eq!(reason(&causes[0]), Some(Abandoned::AttemptTimeout));
    assert!(causes[0].as_ref().unwrap().is_deadline_exceeded());
    assert!(!caller.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_retried_attempt_that_times_out_has_its_context_cancelled_with_attempt_timeout() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .retry(attempts(2))
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let ctx = Context::background();
    let e = p
        .execute(&ctx, move |ctx| {
            watch.watch(ctx.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Boom>(())
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_retries_exhausted());
    let causes = seen.causes().await;
    assert_eq!(causes.len(), 2);
    assert_eq!(reason(&causes[0]), Some(Abandoned::AttemptTimeout));
    assert_eq!(reason(&causes[1]), Some(Abandoned::AttemptTimeout));
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_cancels_the_attempt_in_flight_with_total_timeout() {
    let p = Pipeline::builder("dep")
        .total_timeout(100 * MS)
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let (caller, _guard) = Context::background().with_cancel();
    let e = p
        .execute(&caller, move |ctx| {
            watch.watch(ctx.clone());
            async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Boom>(())
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    let causes = seen.causes().await;
    assert_eq!(reason(&causes[0]), Some(Abandoned::TotalTimeout));
    assert!(!caller.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_cancels_a_retried_attempt_in_flight_with_total_timeout() {
    let p = Pipeline::builder("dep")
        .total_timeout(100 * MS)
        .retry(attempts(3))
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let ctx = Context::background();
    let mut n = 0;
    let e = p
        .execute(&ctx, move |ctx| {
            watch.watch(ctx.clone());
            n += 1;
            let first = n == 1;
            async move {
                if first {
                    return Err(Boom);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, Boom>(())
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    let causes = seen.causes().await;
    assert_eq!(causes.len(), 2);
    // The first attempt finished: its context is left to its own deadline, the
    // total timeout's, which has passed now too.
    assert_eq!(reason(&causes[0]), Some(Abandoned::TotalTimeout));
    assert_eq!(reason(&causes[1]), Some(Abandoned::TotalTimeout));
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_loses_has_its_context_cancelled_with_hedge_lost() {
    let policy = RetryPolicy::builder()
        .hedging(Hedging::fixed(10 * MS).max_hedges(1).build().unwrap())
        .build()
        .unwrap();
    let p = Pipeline::builder("dep").retry(policy).build().unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let (caller, _guard) = Context::background().with_cancel();
    let mut n = 0;
    let v = p
        .execute(&caller, move |ctx| {
            watch.watch(ctx.clone());
            n += 1;
            let first = n == 1;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                Ok::<_, Boom>(n)
            }
        })
        .await
        .unwrap();
    assert_eq!(v, 2);
    let causes = seen.causes().await;
    assert_eq!(causes.len(), 2);
    assert_eq!(reason(&causes[0]), Some(Abandoned::HedgeLost));
    assert!(!causes[0].as_ref().unwrap().is_deadline_exceeded());
    assert!(!caller.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_cancels_the_attempt_with_its_own_cause() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let (caller, guard) = Context::background().with_cancel();
    let call = p.execute(&caller, move |ctx| {
        watch.watch(ctx.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Boom>(())
        }
    });
    let cancel = async {
        tokio::time::sleep(10 * MS).await;
        guard.cancel_with("client went away");
    };
    let (result, ()) = tokio::join!(call, cancel);
    assert!(result.unwrap_err().is_cancelled());
    let causes = seen.causes().await;
    let cause = causes[0].as_ref().unwrap();
    assert_eq!(cause.to_string(), "context canceled: client went away");
    assert_eq!(cause.abandoned_by(), None);
}

#[tokio::test(start_paused = true)]
async fn a_finished_attempt_leaves_the_callers_context_alone() {
    let p = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(100 * MS)
        .retry(attempts(3))
        .build()
        .unwrap();
    let (caller, _guard) = Context::background().with_timeout(Duration::from_secs(2));
    let mut n = 0;
    let v = p
        .execute(&caller, |_ctx| {
            n += 1;
            let n = n;
            async move { if n < 3 { Err(Boom) } else { Ok(n) } }
        })
        .await
        .unwrap();
    assert_eq!(v, 3);
    assert!(!caller.is_cancelled());
    assert!(caller.cause().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_execution_dropped_by_its_caller_cancels_the_attempt_it_was_retrying() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_secs(1))
        .retry(attempts(3))
        .build()
        .unwrap();
    let seen = Seen::default();
    let watch = seen.clone();
    let ctx = Context::background();
    let mut n = 0;
    let execution = p.execute(&ctx, move |ctx| {
        watch.watch(ctx.clone());
        n += 1;
        let first = n == 1;
        async move {
            if first {
                return Err(Boom);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, Boom>(())
        }
    });
    // The caller gives up on the execution after 10 ms, without a context of
    // its own to cancel: the retried attempt's context ends at once.
    let gave_up = tokio::time::timeout(10 * MS, execution).await;
    assert!(gave_up.is_err());
    let causes = seen.causes().await;
    assert_eq!(causes.len(), 2);
    assert!(causes[1].as_ref().unwrap().is_canceled());
    assert_eq!(reason(&causes[1]), None);
}

#[tokio::test(start_paused = true)]
async fn the_attempts_deadline_travels_into_what_the_call_derives_from_it() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let ctx = Context::background();
    let e = p
        .execute(&ctx, |ctx| async move {
            // A timeout of the call's own, longer than the attempt's budget,
            // ends at the attempt's deadline and says so.
            palisade::context::timeout(&ctx, Duration::from_secs(5), std::future::pending::<()>())
                .await
                .map_err(|e| e.context_cause().and_then(Cause::abandoned_by))
        })
        .await;
    // The call saw its context end first and returned its own error.
    let e = e.unwrap_err();
    assert_eq!(e.inner_error(), Some(&Some(Abandoned::AttemptTimeout)));
}
