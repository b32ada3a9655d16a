//! The future API under tokio's paused time: cancellation, concurrency, recovery.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![allow(missing_docs)]

use palisade_test::assert_no_live_tasks_now;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_breaker::{
    Breaker, BreakerConfig, OpenDuration, OpenTransition, SlowCallConfig, State, WindowConfig,
};
use palisade_classify::Outcome;
use tokio::task::JoinSet;

/// A dependency that answers after 100 ms, failing or not, or never.
#[derive(Clone, Default)]
struct Dependency {
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
}

impl Dependency {
    async fn call(&self) -> Result<u32, &'static str> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.down.load(Ordering::SeqCst) {
            Err("unavailable")
        } else {
            Ok(7)
        }
    }
}

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .window(WindowConfig::Count { size: 20 })
        .minimum_calls(10)
        .failure_rate_threshold(Some(50.0))
        .open(OpenDuration::fixed(Duration::from_secs(30)))
        .half_open_probes(5)
}

/// Starts `n` calls and drops those still in flight; returns how many were.
async fn start_and_drop(breaker: &Breaker, dep: &Dependency, n: usize) -> usize {
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (b, d) = (breaker.clone(), dep.clone());
        tasks.spawn(async move {
            let _ = b.call(d.call()).await;
        });
    }
    // Let every task reach its await point, then cancel them all.
    tokio::time::sleep(Duration::from_millis(10)).await;
    tasks.abort_all();
    let mut cancelled = 0;
    while let Some(r) = tasks.join_next().await {
        cancelled += usize::from(r.is_err_and(|e| e.is_cancelled()));
    }
    cancelled
}

#[tokio::test(start_paused = true)]
async fn thousand_dropped_calls_leave_no_trace_and_the_breaker_recovers() {
    let breaker = Breaker::new(config()).unwrap();
    let dep = Dependency::default();

    // Closed: 1000 calls in flight, all cancelled. Nothing is counted.
    assert_eq!(start_and_drop(&breaker, &dep, 1000).await, 1000);
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls, s.failures), (State::Closed, 0, 0));

    // The dependency goes down: the breaker opens.
    dep.down.store(true, Ordering::SeqCst);
    while breaker.state() == State::Closed {
        let _ = breaker.call(dep.call()).await;
    }
    assert_eq!(breaker.state(), State::Open);
    let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
    tokio::time::sleep(wait).await;

    // Half-open: 1000 concurrent calls; exactly five are admitted as probes (the
    // rest are rejected at once), hang, and are cancelled. The probe slots come
    // back and nothing is counted.
    dep.hang.store(true, Ordering::SeqCst);
    assert_eq!(start_and_drop(&breaker, &dep, 1000).await, 5);
    let s = breaker.snapshot();
    assert_eq!(s.state, State::HalfOpen);
    assert_eq!(
        (s.probes_in_flight, s.probe_successes, s.probe_failures),
        (0, 0, 0)
    );

    // The dependency recovers: the probes succeed and the breaker closes.
    dep.hang.store(false, Ordering::SeqCst);
    dep.down.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(breaker.call(dep.call()).await.unwrap(), 7);
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_lost_in_a_hung_call_expires() {
    let breaker = Breaker::new(
        config()
            .half_open_probes(1)
            .max_probe_wait(Duration::from_secs(10)),
    )
    .unwrap();
    breaker.force_open();
    breaker.reset();
    let dep = Dependency::default();
    dep.down.store(true, Ordering::SeqCst);
    while breaker.state() == State::Closed {
        let _ = breaker.call(dep.call()).await;
    }
    tokio::time::sleep(Duration::from_secs(30)).await;

    // The only probe hangs and is never dropped (a leaked task).
    dep.hang.store(true, Ordering::SeqCst);
    let hung = {
        let (b, d) = (breaker.clone(), dep.clone());
        tokio::spawn(async move { b.call(d.call()).await })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(breaker.try_acquire().is_err());
    tokio::time::sleep(Duration::from_secs(10)).await;
    dep.hang.store(false, Ordering::SeqCst);
    dep.down.store(false, Ordering::SeqCst);
    breaker.call(dep.call()).await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    hung.abort();
    let _ = hung.await;
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn open_state_moves_on_in_paused_time() {
    let breaker = Breaker::new(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(1))
            .half_open_probes(1),
    )
    .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    let r = breaker.try_acquire().unwrap_err();
    assert_eq!(r.retry_after(), Some(Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    breaker.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_is_never_a_success() {
    let breaker = Breaker::new(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(2))
            .half_open_probes(1),
    )
    .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::transient());
    // Dropped before it completes: neither success (which would reset the run) nor
    // failure.
    let fut = breaker.call(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, ()>(())
    });
    let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
    assert_eq!(breaker.snapshot().consecutive_failures, 1);
    breaker.try_acquire().unwrap().record(Outcome::transient());
    assert_eq!(breaker.state(), State::Open);
}

fn timed_config() -> BreakerConfig {
    BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(1))
        .open(OpenDuration::fixed(Duration::from_secs(5)))
        .open_transition(OpenTransition::Timer)
        .half_open_probes(1)
}

#[tokio::test(start_paused = true)]
async fn a_timer_moves_the_open_state_on_without_a_call() {
    let breaker = Breaker::new(timed_config()).unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    assert_eq!(breaker.state(), State::Open);
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    assert_eq!(breaker.state(), State::Open);
    tokio::time::sleep(Duration::from_millis(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_no_live_tasks_now().await;
    // A failed probe reopens, with a new timer.
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    assert_eq!(breaker.state(), State::Open);
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn the_timer_ends_with_its_state_or_its_breaker() {
    // A transition before the timer fires cancels it.
    let breaker = Breaker::new(timed_config()).unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        1
    );
    breaker.reset();
    assert_no_live_tasks_now().await;
    // Dropping an open breaker cancels its timer.
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    drop(breaker);
    assert_no_live_tasks_now().await;
}

#[test]
fn without_a_runtime_the_next_call_moves_it_on() {
    let clock = palisade_clock::ManualClock::new();
    let breaker = Breaker::builder(timed_config())
        .clock(clock.clone())
        .build()
        .unwrap();
    breaker.try_acquire().unwrap().record(Outcome::Permanent);
    clock.advance(Duration::from_secs(5));
    assert_eq!(breaker.state(), State::Open);
    assert!(breaker.try_acquire().unwrap().is_probe());
}

/// A call that succeeds after 100 ms.
async fn slow_ok() -> Result<u32, ()> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(1)
}

#[tokio::test(start_paused = true)]
async fn a_timed_call_is_counted_slow_by_its_duration() {
    let breaker = Breaker::new(
        config().slow_call(Some(SlowCallConfig::new(Duration::from_millis(50), 100.0))),
    )
    .unwrap();
    assert_eq!(breaker.call(slow_ok()).await.unwrap(), 1);
    assert_eq!(breaker.call(async { Ok::<_, ()>(2) }).await.unwrap(), 2);
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.slow_calls), (2, 1));
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    fut.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn a_call_asks_the_breaker_when_first_polled() {
    let breaker = Breaker::new(config().half_open_probes(1)).unwrap();
    breaker.force_open();
    // Made while forced open, polled once it is closed again: admitted.
    let fut = breaker.call(async { Ok::<_, ()>(1) });
    breaker.reset();
    assert_eq!(fut.await.unwrap(), 1);
    assert_eq!(breaker.snapshot().calls, 1);

    // Made but not yet polled: it holds no probe slot, so the only slot is free.
    breaker.force_open();
    breaker.reset();
    for _ in 0..10 {
        breaker.try_acquire().unwrap().record(Outcome::transient());
    }
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_secs(30)).await;
    let unpolled = breaker.call(async { Ok::<_, ()>(1) });
    let probe = breaker.try_acquire().unwrap();
    assert!(probe.is_probe());
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
    drop(unpolled);
    assert_eq!(breaker.snapshot().probes_in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_a_transition_is_not_counted_after_it() {
    let breaker = Breaker::new(config()).unwrap();
    let mut fut = std::pin::pin!(breaker.call(slow_ok()));
    assert!(poll_once(fut.as_mut()).is_pending());
    // Reset while the call is under way: its success belongs to the old state.
    breaker.reset();
    assert_eq!(fut.await.unwrap(), 1);
    assert_eq!(breaker.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_before_metrics_only_is_switched_still_counts() {
    let breaker = Breaker::new(config()).unwrap();
    let mut fut = std::pin::pin!(breaker.call(slow_ok()));
    assert!(poll_once(fut.as_mut()).is_pending());
    // Not a transition: the same closed state, so the outcome counts.
    breaker.reconfigure(config().metrics_only(true)).unwrap();
    assert_eq!(fut.await.unwrap(), 1);
    let failed = breaker
        .call(async { Err::<u32, _>("down") })
        .await
        .unwrap_err();
    assert!(!failed.is_rejected());
    let snapshot = breaker.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (2, 1));
}

async fn panicking() -> Result<u32, ()> {
    panic!("the call panics");
    #[allow(unreachable_code)]
    Ok(1)
}

/// Polls `fut` once, expecting the call's panic to come out of it.
fn poll_expecting_the_panic<F: Future>(fut: std::pin::Pin<&mut F>) {
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(fut)));
    let payload = polled.err().expect("the panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the call panics"));
}

fn open_then_half_open_config() -> BreakerConfig {
    config().half_open_probes(1)
}

#[tokio::test(start_paused = true)]
async fn a_call_that_panics_counts_as_a_failure_in_the_closed_state() {
    let breaker = Breaker::new(config()).unwrap();
    {
        let mut fut = std::pin::pin!(breaker.call(panicking()));
        poll_expecting_the_panic(fut.as_mut());
    }
    let s = breaker.snapshot();
    assert_eq!((s.state, s.calls, s.failures), (State::Closed, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_call_panics_counts_as_a_failed_probe_and_frees_its_slot() {
    let breaker = Breaker::new(open_then_half_open_config()).unwrap();
    for _ in 0..10 {
        breaker.try_acquire().unwrap().record(Outcome::transient());
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    {
        let mut fut = std::pin::pin!(breaker.call(panicking()));
        poll_expecting_the_panic(fut.as_mut());
        // Counted before the panic went on: the one probe failed, so it reopened.
        assert_eq!(breaker.state(), State::Open);
    }
    assert_eq!(breaker.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_pending_call_dropped_by_another_panic_counts_nothing() {
    let breaker = Breaker::new(config()).unwrap();
    let fut = Box::pin(breaker.call(std::future::pending::<Result<u32, ()>>()));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut fut = fut;
        assert!(poll_once(fut.as_mut()).is_pending());
        panic!("elsewhere");
    }));
    assert!(unwound.is_err());
    assert_eq!(breaker.snapshot().calls, 0);
}

#[test]
fn a_sync_call_that_panics_counts_as_a_failure_and_the_panic_goes_on() {
    let breaker = Breaker::new(config()).unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        breaker.call_sync(|| -> Result<u32, ()> { panic!("the call panics") })
    }));
    let payload = unwound.expect_err("the panic reaches the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"the call panics"));
    let s = breaker.snapshot();
    assert_eq!((s.calls, s.failures), (1, 1));
}

#[test]
fn a_sync_probe_that_panics_counts_as_a_failed_probe() {
    let clock = palisade_clock::ManualClock::new();
    let breaker = Breaker::builder(open_then_half_open_config())
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..10 {
        breaker.try_acquire().unwrap().record(Outcome::transient());
    }
    clock.advance(Duration::from_secs(30));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        breaker.call_sync_with(
            &palisade_classify::AnyErrorIsTransient,
            || -> Result<u32, ()> { panic!("the call panics") },
        )
    }));
    assert!(unwound.is_err());
    let s = breaker.snapshot();
    assert_eq!((s.state, s.probes_in_flight), (State::Open, 0));
}
