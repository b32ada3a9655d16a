//! Several bulkhead permits at once, and closing a bulkhead.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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
fn many_permits_are_taken_and_released_together() {
    let b = queued(5, 4, 100);
    let three = b.try_acquire_many(3).unwrap();
    assert_eq!(three.count(), 3);
    assert_eq!(b.snapshot().in_flight, 3);
    let two = b.try_acquire_many_owned(2).unwrap();
    let e = b.try_acquire().unwrap_err();
    assert!(!e.exceeds_capacity());
    drop(three);
    assert_eq!(b.snapshot().in_flight, 2);
    drop(two);
    assert_eq!(b.snapshot().in_flight, 0);
    assert_eq!(b.snapshot().rejected, 1);
}

#[test]
fn more_permits_than_the_limit_are_refused_at_once_and_never_queued() {
    let b = queued(4, 4, 100);
    let e = b.try_acquire_many(5).unwrap_err();
    assert!(e.exceeds_capacity());
    assert_eq!(
        e.to_string(),
        "bulkhead too small: 5 permits asked for at once, the limit is 4"
    );
    let _held = b.try_acquire().unwrap();
    let mut f = pin!(b.acquire_many(5));
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Err(e)) if e.exceeds_capacity()));
    let s = b.snapshot();
    assert_eq!((s.waiting, s.rejected, s.timed_out), (0, 2, 0));
    assert_eq!(b.clock().pending_sleeps(), 0);
}

#[test]
fn a_waiter_for_many_is_served_when_they_fit_and_is_not_overtaken() {
    let b = queued(3, 4, 1000);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let mut big = pin!(b.acquire_many(3));
    let mut small = pin!(b.acquire());
    assert!(poll(big.as_mut()).is_pending());
    // One permit is free, but the first waiter needs three: the second waits too.
    assert!(poll(small.as_mut()).is_pending());
    drop(p1);
    assert!(poll(big.as_mut()).is_pending());
    assert!(poll(small.as_mut()).is_pending());
    drop(p2);
    let Poll::Ready(Ok(big_permits)) = poll(big.as_mut()) else {
        panic!("three permits were free")
    };
    assert_eq!(big_permits.count(), 3);
    assert!(poll(small.as_mut()).is_pending());
    drop(big_permits);
    assert!(matches!(poll(small.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(b.snapshot().rejected, 0);
}

#[test]
fn a_departing_first_waiter_lets_those_behind_it_in() {
    let b = queued(3, 4, 1000);
    let _p = b.try_acquire_many(2).unwrap();
    let mut small = pin!(b.acquire());
    {
        let mut big = pin!(b.acquire_many(2));
        assert!(poll(big.as_mut()).is_pending());
        assert!(poll(small.as_mut()).is_pending());
    }
    let Poll::Ready(Ok(_small)) = poll(small.as_mut()) else {
        panic!("the small waiter fits once the first one left")
    };
    let s = b.snapshot();
    assert_eq!((s.in_flight, s.waiting, s.cancelled), (3, 0, 1));
}

#[test]
fn lowering_the_limit_below_a_waiters_permits_refuses_it_at_once() {
    let b = queued(4, 4, 1000);
    let _p = b.try_acquire_many(2).unwrap();
    let mut big = pin!(b.acquire_many(4));
    let mut small = pin!(b.acquire());
    assert!(poll(big.as_mut()).is_pending());
    assert!(poll(small.as_mut()).is_pending());
    b.set_limit(3).unwrap();
    assert!(matches!(poll(big.as_mut()), Poll::Ready(Err(e)) if e.exceeds_capacity()));
    // The small waiter behind it fits under the new limit.
    let Poll::Ready(Ok(_small)) = poll(small.as_mut()) else {
        panic!("the small waiter fits under the new limit")
    };
    let s = b.snapshot();
    assert_eq!(
        (s.in_flight, s.waiting, s.rejected, s.timed_out),
        (3, 0, 1, 0)
    );
}

#[test]
fn closing_refuses_the_waiters_at_once_and_keeps_the_permits_held() {
    let b = queued(1, 4, 1000);
    let held = b.try_acquire().unwrap();
    let mut w1 = pin!(b.acquire());
    let mut w2 = pin!(b.acquire_many_owned(1));
    assert!(poll(w1.as_mut()).is_pending());
    assert!(poll(w2.as_mut()).is_pending());
    assert!(!b.is_closed());
    b.close();
    assert!(b.is_closed());
    assert!(matches!(poll(w1.as_mut()), Poll::Ready(Err(e)) if e.is_closed()));
    assert!(matches!(poll(w2.as_mut()), Poll::Ready(Err(e)) if e.is_closed()));
    let s = b.snapshot();
    assert_eq!((s.in_flight, s.waiting, s.closed), (1, 0, true));
    assert_eq!(b.clock().pending_sleeps(), 0);

    // New calls are refused at once, on every path.
    let e = b.try_acquire().unwrap_err();
    assert!(e.is_closed());
    assert_eq!(e.to_string(), "bulkhead closed");
    assert!(b.try_acquire_uncounted().is_none());
    assert!(b.try_acquire_many(1).unwrap_err().is_closed());
    let mut late = pin!(b.acquire());
    assert!(matches!(poll(late.as_mut()), Poll::Ready(Err(e)) if e.is_closed()));

    // The permit held before is unaffected, and released as usual.
    drop(held);
    assert_eq!(b.snapshot().in_flight, 0);
    assert!(b.try_acquire().unwrap_err().is_closed());
    let s = b.snapshot();
    assert_eq!((s.rejected, s.timed_out, s.cancelled), (6, 0, 0));
    b.close();
}

#[test]
fn closing_without_a_queue_refuses_a_free_slot() {
    let b = Bulkhead::with_clock(BulkheadConfig::new(2), ManualClock::new()).unwrap();
    b.close();
    let mut f = pin!(b.acquire());
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Err(e)) if e.is_closed()));
    assert_eq!(b.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn tasks_waiting_when_the_bulkhead_closes_end_without_waiting_out_their_time() {
    let b = Bulkhead::new(BulkheadConfig::new(1).with_queue(8, Duration::from_secs(10))).unwrap();
    let held = b.try_acquire_owned().unwrap();
    let clock = *b.clock();
    let start = clock.now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let b = b.clone();
        tasks.spawn(async move { b.acquire_owned().await.map(drop) });
    }
    while b.snapshot().waiting < 4 {
        tokio::task::yield_now().await;
    }
    b.close();
    for r in tasks.join_all().await {
        assert!(r.unwrap_err().is_closed());
    }
    assert_eq!(clock.now(), start);
    drop(held);
    assert_eq!(b.snapshot().in_flight, 0);
}
