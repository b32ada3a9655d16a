//! An error that explains itself: the dependency, the time taken, each attempt
//! and the cause chain; a panic with the line it happened on.
#![allow(clippy::disallowed_methods)] // a test starts its own contexts and waits in virtual time
#![cfg(all(feature = "retry", feature = "classify", feature = "backoff"))]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::classify::HttpStatus;
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline};

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn a_failed_execution_reports_its_dependency_its_attempts_and_its_causes() {
    let backoff = Backoff::constant(10 * MS)
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap();
    let p = Pipeline::builder("users-api")
        .classifier(HttpStatus::new())
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .attempt_timeout(100 * MS)
        .build()
        .unwrap();
    let ctx = Context::background();
    let n = AtomicU32::new(0);
    let e = p
        .execute(&ctx, |_| {
            let n = n.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                match n {
                    // A 503: an `Ok` the classifier calls a transient failure.
                    1 => Ok(503u16),
                    // Hangs: the attempt timeout.
                    2 => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(200)
                    }
                    _ => {
                        tokio::time::sleep(7 * MS).await;
                        Err(io::Error::from(io::ErrorKind::ConnectionReset))
                    }
                }
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_retries_exhausted());
    assert_eq!(e.dependency(), Some("users-api"));
    // 0 + 10 + 100 + 10 + 7 ms.
    assert_eq!(e.elapsed(), Some(127 * MS));
    let history = e.history();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(
        history
            .iter()
            .map(|a| (a.number, a.kind))
            .collect::<Vec<_>>(),
        [(1, "ok"), (2, "timeout"), (3, "error")]
    );
    assert_eq!(
        history.iter().map(|a| a.took).collect::<Vec<_>>(),
        [Some(Duration::ZERO), Some(100 * MS), Some(7 * MS)]
    );
    assert!(history.iter().all(|a| a.outcome.is_retryable()));
    // The plain form stays one short line; `{:#}` and `report()` tell the story.
    assert_eq!(e.to_string(), "gave up after 3 attempts");
    let report = e.report().to_string();
    assert_eq!(
        report,
        "users-api: gave up after 3 attempts (after 127ms)\n  \
         attempt 1: ok (transient failure) after 0ns\n  \
         attempt 2: timeout (transient failure) after 100ms: attempt timeout of 100ms elapsed\n  \
         attempt 3: error (transient failure) after 7ms\n\
         caused by: connection reset"
    );
    assert!(format!("{e:#}").starts_with("users-api: gave up after 3 attempts (after 127ms)\n"));
}

#[tokio::test(start_paused = true)]
async fn a_long_execution_keeps_the_first_and_the_last_attempts() {
    let backoff = Backoff::constant(MS)
        .jitter(Jitter::None)
        .max_attempts(20)
        .build()
        .unwrap();
    let p = Pipeline::builder("flaky")
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let ctx = Context::background();
    let e = p
        .execute(&ctx, |_| async { Err::<(), _>(io::Error::other("down")) })
        .await
        .unwrap_err();
    let numbers: Vec<u32> = e.history().iter().map(|a| a.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 17, 18, 19, 20]);
    assert_eq!(e.history_omitted(), 12);
    assert!(format!("{e:#}").contains("\n  ... 12 attempts more\n  attempt 17"));
}

#[tokio::test(start_paused = true)]
async fn one_attempt_has_no_history_and_a_single_failure_names_its_dependency() {
    let p = Pipeline::builder("once")
        .attempt_timeout(50 * MS)
        .build()
        .unwrap();
    let ctx = Context::background();
    let calls = Arc::new(AtomicU32::new(0));
    let e = p
        .execute(&ctx, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), io::Error>>()
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    assert!(e.history().is_empty());
    assert_eq!(e.dependency(), Some("once"));
    assert_eq!(e.elapsed(), Some(50 * MS));
    assert_eq!(
        format!("{e:#}"),
        "once: attempt timeout of 50ms elapsed (after 50ms)"
    );
}
