//! The bulkhead counts every call exactly once, in the counter of its outcome:
//! admitted calls in none, refusals in `rejected`, waits that ran out in
//! `timed_out`, waits given up by the caller in `cancelled`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_clock::ManualClock;
use palisade_limit::{Bulkhead, BulkheadConfig, BulkheadSnapshot};

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

fn unqueued(limit: u32) -> Bulkhead<ManualClock> {
    Bulkhead::with_clock(BulkheadConfig::new(limit), ManualClock::new()).unwrap()
}

/// `(rejected, timed_out, cancelled)`.
fn counts(s: BulkheadSnapshot) -> (u64, u64, u64) {
    (s.rejected, s.timed_out, s.cancelled)
}

#[test]
fn an_immediate_admission_counts_nowhere() {
    let b = queued(2, 4, 100);
    let _p = b.try_acquire().unwrap();
    let mut f = pin!(b.acquire());
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(counts(b.snapshot()), (0, 0, 0));
}

#[test]
fn a_free_slot_tried_without_counting_counts_nowhere_either_way() {
    let b = unqueued(1);
    let p = b.try_acquire_uncounted().unwrap();
    assert!(b.try_acquire_uncounted().is_none());
    assert_eq!(counts(b.snapshot()), (0, 0, 0));
    drop(p);
    assert_eq!(b.snapshot().in_flight, 0);
}

#[test]
fn a_queued_then_admitted_call_is_no_rejection() {
    let b = queued(1, 4, 100);
    let held = b.try_acquire().unwrap();
    // As a pipeline does: a free slot first, without counting, then the queue.
    assert!(b.try_acquire_uncounted().is_none());
    let mut f = pin!(b.acquire());
    assert!(poll(f.as_mut()).is_pending());
    drop(held);
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(counts(b.snapshot()), (0, 0, 0));
}

#[test]
fn a_full_queue_counts_one_rejection_on_each_path() {
    let b = queued(1, 1, 100);
    let _held = b.try_acquire().unwrap();
    let mut waiter = pin!(b.acquire());
    assert!(poll(waiter.as_mut()).is_pending());

    assert!(b.try_acquire().is_err());
    assert_eq!(counts(b.snapshot()), (1, 0, 0));

    assert!(b.try_acquire_uncounted().is_none());
    let mut f = pin!(b.acquire());
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Err(e)) if e.is_queue_full()));
    assert_eq!(counts(b.snapshot()), (2, 0, 0));
}

#[test]
fn without_a_queue_a_refusal_counts_once_on_each_path() {
    let b = unqueued(1);
    let _held = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    assert_eq!(counts(b.snapshot()), (1, 0, 0));

    assert!(b.try_acquire_uncounted().is_none());
    let mut f = pin!(b.acquire());
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Err(e)) if !e.is_timed_out()));
    assert_eq!(counts(b.snapshot()), (2, 0, 0));
}

#[test]
fn a_wait_that_runs_out_counts_one_timeout_and_no_rejection() {
    let b = queued(1, 4, 100);
    let _held = b.try_acquire().unwrap();
    assert!(b.try_acquire_uncounted().is_none());
    let mut f = pin!(b.acquire());
    assert!(poll(f.as_mut()).is_pending());
    b.clock().advance(Duration::from_millis(100));
    assert!(matches!(poll(f.as_mut()), Poll::Ready(Err(e)) if e.is_timed_out()));
    assert_eq!(counts(b.snapshot()), (0, 1, 0));
}

#[test]
fn a_wait_given_up_by_its_caller_counts_one_cancellation() {
    let b = queued(1, 4, 100);
    let held = b.try_acquire().unwrap();
    {
        let mut f = pin!(b.acquire_owned());
        assert!(poll(f.as_mut()).is_pending());
    }
    assert_eq!(counts(b.snapshot()), (0, 0, 1));
    // A waiter dropped after its permit was granted was admitted: no cancellation.
    {
        let mut f = pin!(b.acquire());
        assert!(poll(f.as_mut()).is_pending());
        drop(held);
    }
    assert_eq!(counts(b.snapshot()), (0, 0, 1));
    assert_eq!(b.snapshot().in_flight, 0);
}
