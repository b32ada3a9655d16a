//! Loom models of the retry budget's lock-free deposit and withdrawal.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release
//! -p palisade-retry --test loom --target-dir target/loom`.
#![cfg(loom)]

use std::time::Duration;

use loom::thread;
use palisade_clock::ManualClock;
use palisade_retry::{RetryBudget, loom_break_deposit, loom_break_withdraw};

/// A budget with exactly one retry: no share of deposits, a floor of 1 per second
/// over a one-second window.
fn one_retry() -> RetryBudget<ManualClock> {
    RetryBudget::builder()
        .retry_ratio(0.0)
        .min_retries_per_sec(1)
        .window(Duration::from_secs(1))
        .buckets(1)
        .build_with_clock(ManualClock::new())
        .unwrap()
}

fn race(broken: bool) {
    loom::model(move || {
        loom_break_withdraw(broken);
        let budget = one_retry();
        let other = budget.clone();
        let t = thread::spawn(move || {
            loom_break_withdraw(broken);
            other.try_withdraw()
        });
        let here = budget.try_withdraw();
        let there = t.join().unwrap();
        assert!(
            !(here && there),
            "two racing withdrawals took the one retry twice"
        );
        let snapshot = budget.snapshot();
        assert_eq!(snapshot.withdrawals(), u64::from(here) + u64::from(there));
        assert_eq!(snapshot.rejected(), 2 - snapshot.withdrawals());
    });
}

#[test]
fn racing_withdrawals_never_overdraw() {
    race(false);
}

/// Checking the balance before counting the retry lets both racers through: the
/// model must find that interleaving.
#[test]
#[should_panic(expected = "took the one retry twice")]
fn racing_withdrawals_overdraw_when_checked_before_counted() {
    race(true);
}

/// A deposit racing a withdrawal on a budget that allows one retry per deposit:
/// the withdrawal sees the deposit or not, and the counters add up either way.
#[test]
fn a_deposit_racing_a_withdrawal_is_counted_once() {
    loom::model(|| {
        loom_break_withdraw(false);
        let budget = RetryBudget::builder()
            .retry_ratio(1.0)
            .min_retries_per_sec(0)
            .window(Duration::from_secs(1))
            .buckets(1)
            .build_with_clock(ManualClock::new())
            .unwrap();
        let other = budget.clone();
        let t = thread::spawn(move || other.deposit());
        let took = budget.try_withdraw();
        t.join().unwrap();
        let snapshot = budget.snapshot();
        assert_eq!(snapshot.deposits(), 1);
        assert_eq!(snapshot.withdrawals(), u64::from(took));
        assert_eq!(snapshot.available(), 1 - u64::from(took));
    });
}

/// Two deposits racing to move one slot to a new bucket: both are counted.
fn deposits_moving_a_slot(broken: bool) {
    loom::model(move || {
        loom_break_withdraw(false);
        loom_break_deposit(broken);
        let clock = ManualClock::new();
        let budget = RetryBudget::builder()
            .retry_ratio(1.0)
            .min_retries_per_sec(0)
            .window(Duration::from_secs(1))
            .buckets(1)
            .build_with_clock(clock.clone())
            .unwrap();
        // A deposit in the first bucket, then a whole window later, so the slot
        // counts an old bucket when the two racers come.
        budget.deposit();
        clock.advance(Duration::from_secs(1));
        let other = budget.clone();
        let t = thread::spawn(move || {
            loom_break_deposit(broken);
            other.deposit();
        });
        budget.deposit();
        t.join().unwrap();
        assert_eq!(
            budget.snapshot().deposits(),
            2,
            "a deposit racing another into a new bucket was lost"
        );
    });
}

#[test]
fn deposits_racing_into_a_new_bucket_are_both_counted() {
    deposits_moving_a_slot(false);
}

/// Moving the slot with a plain store after reading it loses one of the two: the
/// model must find that interleaving.
#[test]
#[should_panic(expected = "was lost")]
fn deposits_racing_into_a_new_bucket_lose_one_when_moved_by_a_store() {
    deposits_moving_a_slot(true);
}
