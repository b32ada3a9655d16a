//! The fallback chain outermost in a pipeline, and the caller's context.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "clock", feature = "classify", feature = "fallback"))]

use std::time::Duration;

use palisade::clock::{Clock, TokioClock};
use palisade::context::Cause;
use palisade::fallback::{Failure, Fallback, Trigger};
use palisade::{Context, Error, Pipeline};

#[derive(Debug, PartialEq)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl std::error::Error for Boom {}

const MS: Duration = Duration::from_millis(1);

type Chain = Fallback<u32, Error<Boom>, Context>;

/// A source tier that honours the caller's context: it gives up, with its own
/// error, when the context ends.
fn honouring_source() -> Chain {
    Fallback::builder()
        .source(
            Trigger::failures(),
            |ctx: &Context, _: &Failure<'_, u32, Error<Boom>>| {
                let ctx = ctx.clone();
                async move {
                    ctx.cancelled().await;
                    Err::<u32, _>(Boom("the backup call was cancelled"))
                }
            },
        )
        .named("backup")
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_fallback_that_ends_because_the_caller_cancelled_is_a_cancellation() {
    let with = Pipeline::builder("dep")
        .build()
        .unwrap()
        .with_fallback(honouring_source());
    let (ctx, guard) = Context::background().with_cancel();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(10 * MS).await;
        guard.cancel_with(Boom("the client went away"));
    });
    let e = with
        .execute(&ctx, |_| async { Err::<u32, _>(Boom("primary down")) })
        .await
        .unwrap_err();
    canceller.await.unwrap();
    assert!(e.is_cancelled(), "{e:?}");
    assert!(!e.is_fallback_failed());
    let cause = e.cancel_cause().unwrap();
    assert_eq!(
        cause.downcast_ref::<Boom>(),
        Some(&Boom("the client went away"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_fallback_that_ends_at_the_callers_deadline_is_a_cancellation() {
    let with = Pipeline::builder("dep")
        .build()
        .unwrap()
        .with_fallback(honouring_source());
    let (ctx, _guard) = Context::background().with_timeout(50 * MS);
    let e = with
        .execute(&ctx, |_| async { Err::<u32, _>(Boom("primary down")) })
        .await
        .unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    assert!(e.cancel_cause().is_some_and(Cause::is_deadline_exceeded));
}

#[tokio::test(start_paused = true)]
async fn a_source_that_ignores_the_context_is_abandoned_when_the_caller_cancels() {
    let chain: Chain = Fallback::builder()
        .source(
            Trigger::failures(),
            |_: &Context, _: &Failure<'_, u32, Error<Boom>>| {
                std::future::pending::<Result<u32, Boom>>()
            },
        )
        .build();
    let with = Pipeline::builder("dep")
        .build()
        .unwrap()
        .with_fallback(chain);
    let (ctx, _guard) = Context::background().with_timeout(50 * MS);
    let start = TokioClock.now();
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        with.execute(&ctx, |_| async { Err::<u32, _>(Boom("primary down")) }),
    )
    .await
    .expect("the fallback stops waiting when the caller's context ends")
    .unwrap_err();
    assert!(e.is_cancelled(), "{e:?}");
    assert_eq!(TokioClock.now() - start, 50 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_that_fails_on_its_own_is_still_a_failed_fallback() {
    let chain: Chain = Fallback::builder()
        .source(
            Trigger::failures(),
            |_: &Context, _: &Failure<'_, u32, Error<Boom>>| async {
                Err::<u32, _>(Boom("stale cache empty"))
            },
        )
        .named("stale-cache")
        .build();
    let with = Pipeline::builder("dep")
        .build()
        .unwrap()
        .with_fallback(chain);
    let (ctx, _guard) = Context::background().with_cancel();
    let e = with
        .execute(&ctx, |_| async { Err::<u32, _>(Boom("primary down")) })
        .await
        .unwrap_err();
    assert!(e.is_fallback_failed(), "{e:?}");
    assert_eq!(e.fallback_tier(), Some("stale-cache"));
}

#[tokio::test(start_paused = true)]
async fn a_value_tier_still_answers_a_caller_whose_context_has_ended() {
    // The caller asked for an answer even to its own cancellation (an ignored
    // outcome): a tier that answers at once still does.
    let chain: Chain = Fallback::builder().value(Trigger::any(), 7).build();
    let with = Pipeline::builder("dep")
        .build()
        .unwrap()
        .with_fallback(chain);
    let (ctx, guard) = Context::background().with_cancel();
    guard.cancel();
    let v = with
        .execute(&ctx, |_| async { Ok::<u32, Boom>(1) })
        .await
        .unwrap();
    assert_eq!(v, 7);
}
