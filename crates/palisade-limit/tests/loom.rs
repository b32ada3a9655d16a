//! Loom models of the bulkhead's hand-over between releasing callers and waiters,
//! of its closing and of its limit changing under a joining waiter; of the rate
//! limiter's one-word GCRA, its reservations and its reconfiguration under a
//! check; and of the keyed rate limiter inserting and evicting a key from two
//! threads.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p
//! palisade-limit --test loom --target-dir target/loom`. Each model has a broken
//! twin that must fail, proving the model reaches the interleaving that matters.
#![cfg(loom)]

use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use loom::thread;
use palisade_clock::ManualClock;
use palisade_limit::__loom::{Bug, set};
use palisade_limit::rate::{KeyedRateLimiter, KeyedRateLimiterConfig};
use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};

/// The bug switch is process-wide: the models run one at a time.
fn serial(bug: Bug) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    set(bug);
    guard
}

fn bulkhead() -> Bulkhead<ManualClock> {
    Bulkhead::with_clock(
        BulkheadConfig::new(1).with_queue(1, Duration::from_secs(1)),
        ManualClock::new(),
    )
    .unwrap()
}

/// A permit released while a caller joins the queue always reaches that caller:
/// no lost wake-up (loom reports a deadlock if the waiter sleeps forever).
fn release_meets_waiter() {
    loom::model(|| {
        let b = bulkhead();
        let held = b.try_acquire_owned().unwrap();
        let releaser = thread::spawn(move || drop(held));
        let permit = loom::future::block_on(b.acquire()).unwrap();
        releaser.join().unwrap();
        assert_eq!(b.snapshot().in_flight, 1);
        drop(permit);
        let s = b.snapshot();
        assert_eq!((s.in_flight, s.waiting), (0, 0));
    });
}

#[test]
fn a_release_always_reaches_a_joining_waiter() {
    let _serial = serial(Bug::None);
    release_meets_waiter();
}

#[test]
#[should_panic]
fn broken_a_check_then_act_release_loses_the_waiter() {
    let _serial = serial(Bug::ReleaseCheckThenAct);
    release_meets_waiter();
}

/// A waiter that gives up while a permit is being handed to it passes the permit on:
/// afterwards nothing is held and nobody waits.
fn leaving_waiter_passes_the_permit_on() {
    loom::model(|| {
        let b = bulkhead();
        let held = b.try_acquire_owned().unwrap();
        let mut acquire = Box::pin(b.acquire());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(acquire.as_mut().poll(&mut cx).is_pending(), "queued");
        let releaser = thread::spawn(move || drop(held));
        // Give up (a timeout or cancellation) while the release runs.
        drop(acquire);
        releaser.join().unwrap();
        let s = b.snapshot();
        assert_eq!((s.in_flight, s.waiting), (0, 0), "a permit leaked");
    });
}

#[test]
fn a_leaving_waiter_passes_its_permit_on() {
    let _serial = serial(Bug::None);
    leaving_waiter_passes_the_permit_on();
}

#[test]
#[should_panic]
fn broken_a_leaving_waiter_that_forgets_its_grant_leaks_it() {
    let _serial = serial(Bug::LeaveForgetsGrant);
    leaving_waiter_passes_the_permit_on();
}

/// Two threads race for the last slot of a rate limit at one instant: exactly one
/// gets it.
fn one_slot_one_winner() {
    loom::model(|| {
        let limiter = RateLimiter::with_clock(
            RateLimiterConfig::per_second(1).with_burst(1),
            ManualClock::new(),
        )
        .unwrap();
        let other = limiter.clone();
        let racer = thread::spawn(move || other.check().is_ok());
        let mine = limiter.check().is_ok();
        let theirs = racer.join().unwrap();
        assert!(mine ^ theirs, "passed: {mine} and {theirs}");
    });
}

#[test]
fn the_last_rate_limit_slot_goes_to_one_caller() {
    let _serial = serial(Bug::None);
    one_slot_one_winner();
}

#[test]
#[should_panic]
fn broken_a_load_then_store_gcra_lets_two_through() {
    let _serial = serial(Bug::GcraLoadThenStore);
    one_slot_one_winner();
}

/// A bulkhead closed while a caller joins its queue always answers that caller:
/// it is refused as closed, never left waiting (loom reports a deadlock if it
/// sleeps forever), and nothing stays queued.
fn close_meets_waiter() {
    loom::model(|| {
        let b = bulkhead();
        let held = b.try_acquire_owned().unwrap();
        let closer = {
            let b = b.clone();
            thread::spawn(move || b.close())
        };
        let e = loom::future::block_on(b.acquire()).unwrap_err();
        assert!(e.is_closed(), "{e}");
        closer.join().unwrap();
        drop(held);
        let s = b.snapshot();
        assert_eq!((s.in_flight, s.waiting, s.closed), (0, 0, true));
    });
}

#[test]
fn closing_always_answers_a_joining_waiter() {
    let _serial = serial(Bug::None);
    close_meets_waiter();
}

#[test]
#[should_panic]
fn broken_a_close_that_keeps_its_waiters_leaves_one_waiting() {
    let _serial = serial(Bug::CloseKeepsWaiters);
    close_meets_waiter();
}

/// A waiter reserving a rate-limit slot while another call checks at the same
/// instant: exactly one of them has the slot now; the other is refused or waits.
fn reservation_and_check_share_one_slot() {
    loom::model(|| {
        let limiter = RateLimiter::with_clock(
            RateLimiterConfig::per_second(1).with_burst(1),
            ManualClock::new(),
        )
        .unwrap();
        let other = limiter.clone();
        let racer = thread::spawn(move || other.check().is_ok());
        let mut wait = Box::pin(limiter.until_ready());
        let mut cx = Context::from_waker(Waker::noop());
        let mine = wait.as_mut().poll(&mut cx).is_ready();
        let theirs = racer.join().unwrap();
        assert!(mine ^ theirs, "passed now: {mine} and {theirs}");
    });
}

#[test]
fn a_reservation_and_a_check_never_share_a_slot() {
    let _serial = serial(Bug::None);
    reservation_and_check_share_one_slot();
}

#[test]
#[should_panic]
fn broken_a_load_then_store_reservation_shares_a_slot() {
    let _serial = serial(Bug::ReserveLoadThenStore);
    reservation_and_check_share_one_slot();
}

/// Two threads check the same new key of a full keyed limiter (one key, a burst of
/// one) at one instant: each insert evicts, the key is inserted once, exactly one
/// check passes, and the bound holds.
fn keyed_insert_and_evict() {
    loom::model(|| {
        let limiter: KeyedRateLimiter<u32, ManualClock> = KeyedRateLimiter::with_clock(
            KeyedRateLimiterConfig::new(RateLimiterConfig::per_second(1).with_burst(1), 1),
            ManualClock::new(),
        )
        .unwrap();
        limiter.check(&0).unwrap();
        let other = limiter.clone();
        let racer = thread::spawn(move || other.check(&1).is_ok());
        let mine = limiter.check(&1).is_ok();
        let theirs = racer.join().unwrap();
        assert!(mine ^ theirs, "passed: {mine} and {theirs}");
        assert_eq!(limiter.len(), 1);
    });
}

#[test]
fn a_new_key_raced_by_two_checks_is_inserted_once() {
    let _serial = serial(Bug::None);
    keyed_insert_and_evict();
}

#[test]
#[should_panic]
fn broken_an_insert_that_does_not_look_again_hands_out_a_second_burst() {
    let _serial = serial(Bug::KeyedNoRecheck);
    keyed_insert_and_evict();
}

/// A bulkhead's limit raised while a caller joins its queue: the caller is
/// admitted without any release (loom reports a deadlock if it waits forever).
fn raised_limit_meets_waiter() {
    loom::model(|| {
        let b = bulkhead();
        let held = b.try_acquire_owned().unwrap();
        let raiser = {
            let b = b.clone();
            thread::spawn(move || {
                b.reconfigure(&BulkheadConfig::new(2).with_queue(1, Duration::from_secs(1)))
                    .unwrap()
            })
        };
        let permit = loom::future::block_on(b.acquire()).unwrap();
        raiser.join().unwrap();
        let s = b.snapshot();
        assert_eq!((s.limit, s.in_flight, s.waiting), (2, 2, 0));
        drop((permit, held));
        assert_eq!(b.snapshot().in_flight, 0);
    });
}

#[test]
fn a_raised_bulkhead_limit_reaches_a_joining_waiter() {
    let _serial = serial(Bug::None);
    raised_limit_meets_waiter();
}

#[test]
#[should_panic]
fn broken_a_limit_change_that_skips_the_queue_lock_strands_the_waiter() {
    let _serial = serial(Bug::SetLimitSkipsQueueLock);
    raised_limit_meets_waiter();
}

/// A rate limiter reconfigured from 1 call per second (burst 1) to 2 per second
/// (burst 2) while another thread checks three times at one instant: whatever pair
/// of interval and tolerance each check reads, no more calls pass than the looser
/// limit allows at once (2).
fn reconfigure_meets_checks() {
    loom::model(|| {
        let limiter = RateLimiter::with_clock(
            RateLimiterConfig::per_second(1).with_burst(1),
            ManualClock::new(),
        )
        .unwrap();
        let other = limiter.clone();
        let checker = thread::spawn(move || (0..3).filter(|_| other.check().is_ok()).count());
        limiter
            .reconfigure(&RateLimiterConfig::per_second(2).with_burst(2))
            .unwrap();
        let passed = checker.join().unwrap();
        assert!((1..=2).contains(&passed), "passed: {passed}");
    });
}

#[test]
fn a_check_racing_a_reconfiguration_is_never_looser_than_both_limits() {
    let _serial = serial(Bug::None);
    reconfigure_meets_checks();
}

#[test]
#[should_panic]
fn broken_a_reconfiguration_through_a_zero_interval_lets_a_burst_through() {
    let _serial = serial(Bug::ReconfigureZeroIntervalFirst);
    reconfigure_meets_checks();
}
