//! The pipeline's layers, its error and its composition order, in virtual time.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "clock", feature = "classify", feature = "fallback"))]

use palisade_test::assert_no_live_tasks_now;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::classify::{AnyErrorIsTransient, ClassifyExt, HttpStatus, Outcome};
use palisade::clock::{Clock, TokioClock};
use palisade::fallback::{Fallback, Trigger};
use palisade::{Context, Error, Pipeline, TimeoutKind};

#[derive(Debug, PartialEq)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

impl std::error::Error for Boom {}

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn success_and_the_inner_error() {
    let p = Pipeline::builder("dep").build().unwrap();
    let ctx = Context::background();
    assert_eq!(
        p.execute(&ctx, |_| async { Ok::<_, Boom>(1) })
            .await
            .unwrap(),
        1
    );
    let e = p
        .execute(&ctx, |_| async { Err::<u32, _>(Boom("reset")) })
        .await
        .unwrap_err();
    assert!(e.is_inner());
    assert_eq!(e.inner_error(), Some(&Boom("reset")));
    assert_eq!(e.outcome(), Outcome::transient());
    assert_eq!(e.to_string(), "boom: reset");
    assert_eq!(e.into_inner().unwrap(), Boom("reset"));
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_the_outcome() {
    let p = Pipeline::builder("dep")
        .classifier(AnyErrorIsTransient.permanent_err(|e: &Boom| e.0 == "corrupt"))
        .build()
        .unwrap();
    let e = p
        .execute(&Context::background(), |_| async {
            Err::<(), _>(Boom("corrupt"))
        })
        .await
        .unwrap_err();
    assert_eq!(e.outcome(), Outcome::Permanent);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let e = p
        .execute(&Context::background(), |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Boom>(())
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Attempt));
    assert!(e.outcome().is_retryable());
    assert_eq!(e.to_string(), "attempt timeout of 100ms elapsed");
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn total_timeout() {
    let p = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_secs(10))
        .total_timeout(250 * MS)
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
async fn cancellation_keeps_its_cause() {
    let p = Pipeline::builder("dep").build().unwrap();
    let (ctx, guard) = Context::background().with_cancel();
    let started = Arc::new(AtomicU32::new(0));
    let s = started.clone();
    let run = p.execute(&ctx, move |_| {
        s.fetch_add(1, Ordering::Relaxed);
        std::future::pending::<Result<(), Boom>>()
    });
    let cancel = async {
        tokio::time::sleep(10 * MS).await;
        guard.cancel_with(Boom("client went away"));
    };
    let (e, ()) = tokio::join!(run, cancel);
    let e = e.unwrap_err();
    assert!(e.is_cancelled());
    assert_eq!(e.outcome(), Outcome::Ignored);
    assert_eq!(started.load(Ordering::Relaxed), 1);
    let cause = e.source().unwrap();
    assert_eq!(
        cause.to_string(),
        "context canceled: boom: client went away"
    );
    assert!(e.cancel_cause().unwrap().downcast_ref::<Boom>().is_some());

    // An already-ended context never starts the call.
    let (ctx, _g) = Context::background().with_timeout(Duration::ZERO);
    let e = p
        .execute(&ctx, |_| async { Ok::<_, Boom>(()) })
        .await
        .unwrap_err();
    assert!(e.cancel_cause().unwrap().is_deadline_exceeded());
}

#[tokio::test(start_paused = true)]
async fn the_context_deadline_ends_the_call() {
    let p = Pipeline::builder("dep").build().unwrap();
    let (ctx, _g) = Context::background().with_timeout(50 * MS);
    let e = p
        .execute(&ctx, |_| std::future::pending::<Result<(), Boom>>())
        .await
        .unwrap_err();
    assert!(e.is_cancelled());
    assert!(e.cancel_cause().unwrap().is_deadline_exceeded());
}

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_a_permanent_error() {
    let p = Pipeline::builder("dep").build().unwrap();
    let e = p
        .execute(&Context::background(), |_| async {
            if true {
                panic!("index out of range");
            }
            Ok::<(), Boom>(())
        })
        .await
        .unwrap_err();
    assert!(e.is_panic());
    assert_eq!(e.panic().unwrap().message(), "index out of range");
    assert_eq!(e.outcome(), Outcome::Permanent);
}

#[tokio::test(start_paused = true)]
async fn the_call_sees_the_callers_context() {
    #[derive(Debug)]
    struct RequestId(u32);
    let p = Pipeline::builder("dep").build().unwrap();
    let ctx = Context::background().with_value(RequestId(5));
    let id = p
        .execute(&ctx, |ctx| async move {
            Ok::<_, Boom>(ctx.get::<RequestId>().unwrap().0)
        })
        .await
        .unwrap();
    assert_eq!(id, 5);
}

#[tokio::test(start_paused = true)]
async fn fallback_is_outermost() {
    let p = Pipeline::builder("dep")
        .classifier(HttpStatus::new())
        .total_timeout(100 * MS)
        .build()
        .unwrap();
    let chain = Fallback::builder()
        .value(Trigger::failures(), 204u16)
        .build();
    let with = p.with_fallback::<u16, Boom>(chain);
    let ctx = Context::background();
    // A total timeout is replaced...
    let v = with
        .execute(&ctx, |_| std::future::pending::<Result<u16, Boom>>())
        .await
        .unwrap();
    assert_eq!(v, 204);
    // ... and so is an `Ok` that the classifier calls a failure.
    assert_eq!(
        with.execute(&ctx, |_| async { Ok(503) }).await.unwrap(),
        204
    );
    assert_eq!(
        with.execute(&ctx, |_| async { Ok(200) }).await.unwrap(),
        200
    );
    // An ignored outcome is the caller's answer.
    assert_eq!(
        with.execute(&ctx, |_| async { Ok(404) }).await.unwrap(),
        404
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_fallback_keeps_the_pipelines_error_as_source() {
    let p = Pipeline::builder("dep").build().unwrap();
    let chain = Fallback::builder()
        .source(
            Trigger::failures(),
            |_ctx: &Context, _f: &palisade::fallback::Failure<'_, u32, Error<Boom>>| async {
                Err::<u32, _>(Boom("stale cache empty"))
            },
        )
        .named("stale-cache")
        .build();
    let e = p
        .with_fallback(chain)
        .execute(&Context::background(), |_| async {
            Err::<u32, _>(Boom("primary down"))
        })
        .await
        .unwrap_err();
    assert!(e.is_fallback_failed());
    assert_eq!(e.fallback_tier(), Some("stale-cache"));
    assert_eq!(
        e.to_string(),
        "fallback `stale-cache` failed: boom: stale cache empty"
    );
    assert_eq!(e.source().unwrap().to_string(), "boom: primary down");
    assert_eq!(e.inner_error(), Some(&Boom("primary down")));
    assert!(e.original().is_inner());
}

#[test]
fn bad_settings_name_the_field() {
    let e = Pipeline::builder("dep")
        .attempt_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "attempt_timeout");
    assert_eq!(
        e.to_string(),
        "`attempt_timeout` is 0s, allowed more than 0 and at most 24h"
    );
    let e = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(2 * 86_400))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "total_timeout");
}

/// Polls `fut` once with a waker that does nothing; a panic comes back as `Err`.
fn poll_once<F: std::future::Future>(
    fut: std::pin::Pin<&mut F>,
) -> std::thread::Result<std::task::Poll<F::Output>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.poll(&mut cx)))
}

#[tokio::test(start_paused = true)]
async fn an_execution_finishes_once() {
    let p = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ctx = Context::background();

    // Finished by its first poll.
    let mut ready = std::pin::pin!(p.execute(&ctx, |_| async { Ok::<u32, Boom>(1) }));
    assert!(matches!(
        poll_once(ready.as_mut()),
        Ok(std::task::Poll::Ready(Ok(1)))
    ));
    assert!(
        poll_once(ready.as_mut()).is_err(),
        "polled after completion"
    );

    // Finished by a later poll, with the total timeout armed meanwhile: polled
    // again, it neither waits on that timer nor ends a second time with it.
    let mut later = std::pin::pin!(p.execute(&ctx, |_| async {
        tokio::task::yield_now().await;
        Ok::<u32, Boom>(2)
    }));
    assert!(matches!(
        poll_once(later.as_mut()),
        Ok(std::task::Poll::Pending)
    ));
    assert!(matches!(
        poll_once(later.as_mut()),
        Ok(std::task::Poll::Ready(Ok(2)))
    ));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(
        poll_once(later.as_mut()).is_err(),
        "polled after completion"
    );
}
