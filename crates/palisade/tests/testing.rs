//! `palisade::testing`: the gauges of each primitive read what it holds, and a
//! check over them fails while something is held.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "testing",
    feature = "limit",
    feature = "breaker",
    feature = "retry",
    feature = "config"
))]

use std::time::Duration;

use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::config::Registry;
use palisade::limit::{Bulkhead, BulkheadConfig};
use palisade::retry::RetryBudget;
use palisade::testing::{LeakCheck, LeakCheckExt, assert_no_live_tasks, drop_at_every_poll};
use palisade::{Context, Pipeline};

const MS: Duration = Duration::from_millis(1);

fn held(check: &LeakCheck) -> Vec<(String, u64)> {
    match check.check() {
        Ok(()) => Vec::new(),
        Err(e) => e.held().iter().map(|l| (l.name.clone(), l.value)).collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_kept_bulkhead_permit_and_a_waiter_are_leaks() {
    let bulkhead =
        Bulkhead::new(BulkheadConfig::new(1).with_queue(1, Duration::from_secs(1))).unwrap();
    let leaks = LeakCheck::new().watch("db", &bulkhead);
    assert!(leaks.check().is_ok());
    let permit = bulkhead.try_acquire().unwrap();
    assert_eq!(
        held(&leaks),
        [("db: bulkhead permits in use".to_owned(), 1)]
    );
    let mut waiting = Box::pin(bulkhead.acquire());
    assert!(futures_util::poll!(waiting.as_mut()).is_pending());
    assert_eq!(
        held(&leaks),
        [
            ("db: bulkhead permits in use".to_owned(), 1),
            ("db: bulkhead waiters".to_owned(), 1)
        ]
    );
    drop(waiting);
    drop(permit);
    leaks.assert_released().await;
}

#[tokio::test(start_paused = true)]
async fn a_held_probe_slot_is_a_leak() {
    let breaker = Breaker::new(BreakerConfig::default()).unwrap();
    let leaks = LeakCheck::new().watch("db", &breaker);
    breaker.open_for(Duration::from_secs(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    let probe = breaker.try_acquire().unwrap();
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        held(&leaks),
        [("db: breaker probes in flight".to_owned(), 1)]
    );
    let err = leaks.released(10 * MS).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "still held: db: breaker probes in flight = 1"
    );
    drop(probe);
    leaks.assert_released().await;
}

#[tokio::test(start_paused = true)]
async fn a_kept_child_context_is_a_leak() {
    let (root, _guard) = Context::background().with_cancel();
    let leaks = LeakCheck::new().watch("root", &root);
    let (child, child_guard) = root.with_timeout(Duration::from_secs(1));
    assert_eq!(
        held(&leaks),
        [("root: context registrations".to_owned(), 1)]
    );
    drop(child_guard);
    drop(child);
    leaks.assert_released().await;
    assert_no_live_tasks().await;
}

#[tokio::test(start_paused = true)]
async fn a_budget_is_never_overdrawn() {
    let budget = RetryBudget::builder()
        .retry_ratio(0.5)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let leaks = LeakCheck::new().watch("db", &budget);
    for _ in 0..4 {
        budget.deposit();
    }
    while budget.try_withdraw() {}
    assert_eq!(budget.snapshot().withdrawals(), 2);
    leaks.assert_released().await;
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_watches_its_bulkhead_and_breaker() {
    let pipeline = Pipeline::builder("db")
        .breaker(Breaker::new(BreakerConfig::default()).unwrap())
        .bulkhead(Bulkhead::new(BulkheadConfig::new(2)).unwrap())
        .build()
        .unwrap();
    let leaks = LeakCheck::new().watch("db", &pipeline);
    assert_eq!(
        leaks.names().collect::<Vec<_>>(),
        [
            "db: bulkhead permits in use",
            "db: bulkhead waiters",
            "db: breaker probes in flight"
        ]
    );
    let permit = pipeline.bulkhead().unwrap().try_acquire().unwrap();
    assert!(leaks.check().is_err());
    drop(permit);
    let ctx = Context::background();
    let done = drop_at_every_poll(
        || {
            pipeline.execute(&ctx, |_| async {
                tokio::time::sleep(5 * MS).await;
                Ok::<_, std::io::Error>(1)
            })
        },
        || leaks.check(),
    )
    .await;
    assert_eq!(done.output.unwrap(), 1);
    assert_eq!(done.polls, 2);
}

#[tokio::test(start_paused = true)]
async fn a_named_pipeline_is_watched_through_reloads() {
    let registry =
        Registry::from_toml("[pipelines.db]\n[pipelines.db.bulkhead]\nmax_concurrent = 2\n")
            .unwrap();
    let named = registry.pipeline("db").unwrap();
    let leaks = LeakCheck::new().watch("db", &named);
    registry
        .reload_toml("[pipelines.db]\n[pipelines.db.bulkhead]\nmax_concurrent = 3\n")
        .unwrap();
    let current = named.current();
    let permit = current.bulkhead().unwrap().try_acquire().unwrap();
    assert_eq!(
        held(&leaks),
        [("db: bulkhead permits in use".to_owned(), 1)]
    );
    drop(permit);
    leaks.assert_released().await;
}
