//! The bulkhead: limits, FIFO queue, timeouts in virtual time, drop-safety, hot
//! reload, configuration.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_classify::Strategy;
use palisade_clock::{Clock, ManualClock};
use palisade_limit::{Bulkhead, BulkheadConfig};

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn queued(limit: u32, queue: u32, wait_ms: u64) -> Bulkhead<ManualClock> {
    Bulkhead::with_clock(
        BulkheadConfig::new(limit).with_queue(queue, Duration::from_millis(wait_ms)),
        ManualClock::new(),
    )
    .unwrap()
}

#[test]
fn admits_up_to_the_limit_and_releases_on_drop() {
    let b = Bulkhead::with_clock(BulkheadConfig::new(2), ManualClock::new()).unwrap();
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire_owned().unwrap();
    let e = b.try_acquire().unwrap_err();
    assert_eq!(e.rejection().strategy(), Strategy::Bulkhead);
    assert!(!e.is_queue_full() && !e.is_timed_out());
    assert_eq!(e.to_string(), "bulkhead full: 2 calls in flight");
    assert_eq!(b.snapshot().in_flight, 2);
    assert_eq!(b.snapshot().rejected, 1);
    drop(p1);
    assert_eq!(b.snapshot().in_flight, 1);
    let _p3 = b.try_acquire().unwrap();
    drop(p2);
    assert_eq!(b.snapshot().in_flight, 1);
}

#[test]
fn without_a_queue_acquire_answers_at_once() {
    let b = Bulkhead::with_clock(BulkheadConfig::new(1), ManualClock::new()).unwrap();
    let _p = b.try_acquire().unwrap();
    let mut f = pin!(b.acquire());
    match poll(f.as_mut()) {
        Poll::Ready(Err(e)) => assert!(!e.is_timed_out()),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(b.clock().pending_sleeps(), 0);
}

#[test]
fn waiters_are_served_first_in_first_out() {
    let b = queued(1, 10, 1000);
    let held = b.try_acquire().unwrap();
    let mut w1 = pin!(b.acquire());
    let mut w2 = pin!(b.acquire());
    let mut w3 = pin!(b.acquire());
    assert!(poll(w1.as_mut()).is_pending());
    assert!(poll(w2.as_mut()).is_pending());
    assert!(poll(w3.as_mut()).is_pending());
    assert_eq!(b.snapshot().waiting, 3);
    // A newcomer does not overtake the queue.
    assert!(b.try_acquire().is_err());

    drop(held);
    // w3 and w2 polled first: they are still waiting; w1 has the permit.
    assert!(poll(w3.as_mut()).is_pending());
    assert!(poll(w2.as_mut()).is_pending());
    let p1 = match poll(w1.as_mut()) {
        Poll::Ready(Ok(p)) => p,
        other => panic!("w1 should hold the permit: {other:?}"),
    };
    assert_eq!(b.snapshot().waiting, 2);
    assert_eq!(b.snapshot().in_flight, 1);
    drop(p1);
    assert!(poll(w3.as_mut()).is_pending());
    let Poll::Ready(Ok(p2)) = poll(w2.as_mut()) else {
        panic!("w2 is next")
    };
    drop(p2);
    let Poll::Ready(Ok(p3)) = poll(w3.as_mut()) else {
        panic!("w3 is last")
    };
    drop(p3);
    let s = b.snapshot();
    assert_eq!((s.in_flight, s.waiting), (0, 0));
}

#[test]
fn the_wait_runs_out_in_virtual_time() {
    let b = queued(1, 4, 250);
    let _held = b.try_acquire().unwrap();
    let mut w = pin!(b.acquire());
    assert!(poll(w.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(249));
    assert!(poll(w.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(1));
    match poll(w.as_mut()) {
        Poll::Ready(Err(e)) => {
            assert!(e.is_timed_out());
            assert_eq!(e.rejection().strategy(), Strategy::Bulkhead);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let s = b.snapshot();
    assert_eq!((s.waiting, s.timed_out, s.rejected), (0, 1, 0));
    assert_eq!(b.clock().pending_sleeps(), 0);
}

#[test]
fn a_caller_with_less_time_waits_less() {
    let b = queued(1, 4, 1000);
    let _held = b.try_acquire().unwrap();
    let mut w = pin!(b.acquire_timeout(Duration::from_millis(10)));
    assert!(poll(w.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(10));
    assert!(matches!(poll(w.as_mut()), Poll::Ready(Err(e)) if e.is_timed_out()));
}

#[test]
fn a_full_queue_rejects() {
    let b = queued(1, 2, 1000);
    let _held = b.try_acquire().unwrap();
    let mut w1 = pin!(b.acquire());
    let mut w2 = pin!(b.acquire());
    let mut w3 = pin!(b.acquire());
    assert!(poll(w1.as_mut()).is_pending());
    assert!(poll(w2.as_mut()).is_pending());
    match poll(w3.as_mut()) {
        Poll::Ready(Err(e)) => {
            assert!(e.is_queue_full());
            assert_eq!(
                e.to_string(),
                "bulkhead full: 1 calls in flight and 2 waiting"
            );
        }
        other => panic!("expected queue full, got {other:?}"),
    }
    assert_eq!(b.snapshot().rejected, 1);
}

#[test]
fn a_dropped_waiter_leaves_the_queue_at_once() {
    let b = queued(1, 2, 1000);
    let held = b.try_acquire().unwrap();
    {
        let mut w1 = pin!(b.acquire());
        assert!(poll(w1.as_mut()).is_pending());
        assert_eq!(b.snapshot().waiting, 1);
        assert_eq!(b.clock().pending_sleeps(), 1);
    }
    assert_eq!(b.snapshot().waiting, 0);
    assert_eq!(b.clock().pending_sleeps(), 0);
    drop(held);
    // The permit was not handed to the departed waiter.
    assert_eq!(b.snapshot().in_flight, 0);
    let _p = b.try_acquire().unwrap();
}

#[test]
fn a_permit_granted_to_a_dropped_waiter_is_passed_on() {
    let b = queued(1, 4, 1000);
    let held = b.try_acquire().unwrap();
    let mut w2 = Box::pin(b.acquire());
    {
        let mut w1 = pin!(b.acquire());
        assert!(poll(w1.as_mut()).is_pending());
        assert!(poll(w2.as_mut()).is_pending());
        drop(held); // granted to w1, which never collects it
        assert_eq!(b.snapshot().waiting, 1);
    }
    let Poll::Ready(Ok(p)) = poll(w2.as_mut()) else {
        panic!("w1's permit should have passed to w2")
    };
    assert_eq!(b.snapshot().in_flight, 1);
    drop(p);
    drop(w2);
    assert_eq!(b.snapshot().in_flight, 0);
}

#[test]
fn a_grant_at_the_deadline_wins_over_the_timeout() {
    let b = queued(1, 4, 100);
    let held = b.try_acquire().unwrap();
    let mut w = pin!(b.acquire());
    assert!(poll(w.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(100));
    drop(held);
    assert!(matches!(poll(w.as_mut()), Poll::Ready(Ok(_))));
}

#[test]
fn raising_the_limit_admits_waiters_and_lowering_it_drains() {
    let b = queued(1, 10, 1000);
    let p1 = b.try_acquire().unwrap();
    let mut w1 = pin!(b.acquire());
    let mut w2 = pin!(b.acquire());
    let mut w3 = pin!(b.acquire());
    for w in [w1.as_mut(), w2.as_mut()] {
        assert!(poll(w).is_pending());
    }
    assert!(poll(w3.as_mut()).is_pending());
    b.set_limit(3).unwrap();
    let Poll::Ready(Ok(p2)) = poll(w1.as_mut()) else {
        panic!("admitted by the higher limit")
    };
    let Poll::Ready(Ok(p3)) = poll(w2.as_mut()) else {
        panic!("admitted by the higher limit")
    };
    assert!(poll(w3.as_mut()).is_pending());

    // Down to 1 with 3 in flight and one waiting: two releases just drain.
    b.set_limit(1).unwrap();
    drop(p1);
    assert!(poll(w3.as_mut()).is_pending());
    drop(p2);
    assert!(poll(w3.as_mut()).is_pending());
    assert_eq!(b.snapshot().in_flight, 1);
    drop(p3);
    assert!(matches!(poll(w3.as_mut()), Poll::Ready(Ok(_))));
    assert!(b.set_limit(0).is_err());
}

#[test]
fn reconfigure_validates_and_applies() {
    let b = queued(1, 0, 1000);
    let _p = b.try_acquire().unwrap();
    let bad = BulkheadConfig::new(0);
    let e = b.reconfigure(&bad).unwrap_err();
    assert_eq!(e.field(), "max_concurrent");
    b.reconfigure(&BulkheadConfig::new(2).with_queue(5, Duration::from_millis(20)))
        .unwrap();
    let s = b.snapshot();
    assert_eq!((s.limit, s.max_queue), (2, 5));
    let _q = b.try_acquire().unwrap();
    let mut w = pin!(b.acquire());
    assert!(poll(w.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(20));
    assert!(matches!(poll(w.as_mut()), Poll::Ready(Err(e)) if e.is_timed_out()));
}

#[test]
fn configuration_errors_name_the_field_and_range() {
    let cases = [
        (
            BulkheadConfig::new(0),
            "`max_concurrent` is 0, allowed 1..=1000000",
        ),
        (
            BulkheadConfig::new(2_000_000),
            "`max_concurrent` is 2000000, allowed 1..=1000000",
        ),
        (
            BulkheadConfig::new(1).with_queue(1, Duration::ZERO),
            "`max_wait` is 0s, allowed 1ns..=86400s",
        ),
    ];
    for (config, message) in cases {
        let e = Bulkhead::new(config).unwrap_err();
        assert_eq!(e.to_string(), message);
    }
    let parsed: Result<BulkheadConfig, _> = serde_json::from_str(r#"{ "max_concurent": 3 }"#);
    assert!(parsed.unwrap_err().to_string().contains("max_concurent"));
    let parsed: Result<BulkheadConfig, _> = serde_json::from_str(r#"{ "max_wait": "3 parsecs" }"#);
    assert!(parsed.is_err());
    let config: BulkheadConfig = toml::from_str("max_concurrent = 4\nmax_wait = 250").unwrap();
    assert_eq!(config.max_wait, Duration::from_millis(250));
    let text = serde_json::to_string(&config).unwrap();
    assert_eq!(
        text,
        r#"{"max_concurrent":4,"max_queue":0,"max_wait":"250ms"}"#
    );
    assert_eq!(
        serde_json::from_str::<BulkheadConfig>(&text).unwrap(),
        config
    );
    assert_eq!(
        serde_json::from_str::<BulkheadConfig>("{}").unwrap(),
        BulkheadConfig::default()
    );
}

#[tokio::test(start_paused = true)]
async fn tasks_wait_their_turn_on_the_tokio_clock() {
    let b = Bulkhead::new(BulkheadConfig::new(2).with_queue(8, Duration::from_secs(1))).unwrap();
    let clock = *b.clock();
    let start = clock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let b = b.clone();
        tasks.spawn(async move {
            let _permit = b.acquire_owned().await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        });
    }
    tasks.join_all().await;
    // Six calls of 100 ms, two at a time.
    assert_eq!(clock.now() - start, Duration::from_millis(300));
    let s = b.snapshot();
    assert_eq!(
        (s.in_flight, s.waiting, s.rejected, s.timed_out),
        (0, 0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_waiter_cancelled_by_a_timeout_releases_everything() {
    let b = Bulkhead::new(BulkheadConfig::new(1).with_queue(8, Duration::from_secs(10))).unwrap();
    let held = b.try_acquire().unwrap();
    let r = tokio::time::timeout(Duration::from_millis(5), b.acquire()).await;
    assert!(r.is_err());
    assert_eq!(b.snapshot().waiting, 0);
    drop(held);
    assert_eq!(b.snapshot().in_flight, 0);
}
