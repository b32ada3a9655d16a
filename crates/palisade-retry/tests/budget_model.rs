//! The retry budget against reference models: random deposits, withdrawals and
//! time steps, with every answer compared.

use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_retry::RetryBudget;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Clone, Debug)]
enum Op {
    Deposit(u8),
    Withdraw,
    Advance(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1u8..20).prop_map(Op::Deposit),
        4 => Just(Op::Withdraw),
        1 => (0u16..3000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// With no share of deposits, the budget is a sliding window of `reserve`
    /// withdrawals counted per bucket: the model keeps every withdrawal's bucket and
    /// answers exactly.
    #[test]
    fn the_floor_alone_matches_an_exact_model(
        min_per_sec in 1u32..4,
        buckets in 1u32..12,
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(1));
        let window = Duration::from_secs(2);
        let budget = RetryBudget::builder()
            .retry_ratio(0.0)
            .min_retries_per_sec(min_per_sec)
            .window(window)
            .buckets(buckets)
            .build_with_clock(clock.clone())
            .unwrap();
        let width = window.as_nanos() as u64 / u64::from(buckets);
        let reserve = u64::from(min_per_sec) * 2;
        let mut taken: Vec<u64> = Vec::new();
        let mut rejected = 0;
        for op in ops {
            match op {
                Op::Deposit(n) => (0..n).for_each(|_| budget.deposit()),
                Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                Op::Withdraw => {
                    let bucket = (clock.now().as_nanos() - 1) / width;
                    let in_window = taken
                        .iter()
                        .filter(|&&b| b + u64::from(buckets) > bucket)
                        .count() as u64;
                    let expected = in_window < reserve;
                    prop_assert_eq!(budget.try_withdraw(), expected);
                    if expected {
                        taken.push(bucket);
                    } else {
                        rejected += 1;
                    }
                }
            }
            let snapshot = budget.snapshot();
            prop_assert_eq!(snapshot.rejected(), rejected);
        }
    }

    /// With a share of deposits and steady traffic, one step a bucket: the
    /// withdrawals of the last window take exactly the share of its deposits, no
    /// more, and no less than what is left after the window's earlier withdrawals.
    #[test]
    fn the_share_of_the_window_is_granted_exactly(
        per_step in proptest::collection::vec(0u8..30, 1..120),
    ) {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(1));
        let budget = RetryBudget::builder()
            .retry_ratio(0.5)
            .min_retries_per_sec(0)
            .window(Duration::from_secs(10))
            .buckets(10)
            .build_with_clock(clock.clone())
            .unwrap();
        // Per one-second step: deposits, then as many withdrawals as granted.
        let mut history: Vec<(u64, u64)> = Vec::new();
        for deposits in per_step {
            (0..deposits).for_each(|_| budget.deposit());
            let mut granted = 0;
            while granted < 100 && budget.try_withdraw() {
                granted += 1;
            }
            history.push((u64::from(deposits), granted));
            // Over the last 10 steps: the window.
            let recent = history.iter().rev().take(10);
            let withdrawn: u64 = recent.clone().map(|(_, w)| w).sum();
            let deposited: u64 = recent.map(|(d, _)| d).sum();
            let share = (0.5 * deposited as f64).floor() as u64;
            prop_assert!(
                granted == 100 || withdrawn == share.max(withdrawn - granted),
                "withdrew {} with {} deposits",
                withdrawn,
                deposited
            );
            clock.advance(Duration::from_secs(1));
        }
    }

    /// Any ratio and floor, any interleaving of deposits, withdrawals and clock
    /// steps (within a bucket, across a few, or past the whole window): the model
    /// keeps the exact time of every deposit and granted withdrawal and counts one
    /// in the window at `now` while the bucket of its time (`(t − created) / width`,
    /// `width = window / buckets`) is one of the `buckets` last up to the bucket of
    /// `now`. Compared after every step: each withdrawal's answer, and the
    /// snapshot's deposits, withdrawals, available retries and rejections.
    #[test]
    fn deposits_and_withdrawals_expire_exactly_by_their_bucket(
        ratio in prop_oneof![Just(0.0), Just(0.25), Just(0.5), Just(1.0), Just(3.0)],
        min_per_sec in 0u32..3,
        buckets in 1u32..12,
        window_ms in prop_oneof![Just(1000u64), Just(1500), Just(2000)],
        ops in proptest::collection::vec(timed_op(), 1..300),
    ) {
        let start = Timestamp::from_nanos(1);
        let clock = ManualClock::starting_at(start);
        let window = Duration::from_millis(window_ms);
        let budget = RetryBudget::builder()
            .retry_ratio(ratio)
            .min_retries_per_sec(min_per_sec)
            .window(window)
            .buckets(buckets)
            .build_with_clock(clock.clone())
            .unwrap();
        let width = window.as_nanos() as u64 / u64::from(buckets);
        let reserve = f64::from(min_per_sec) * window.as_secs_f64();
        let bucket = |t: Timestamp| (t.as_nanos() - start.as_nanos()) / width;
        let live = |times: &[Timestamp], now: Timestamp| {
            times
                .iter()
                .filter(|&&t| bucket(t) + u64::from(buckets) > bucket(now))
                .count() as u64
        };
        let mut deposits: Vec<Timestamp> = Vec::new();
        let mut withdrawals: Vec<Timestamp> = Vec::new();
        let mut rejected = 0;
        for op in ops {
            let now = clock.now();
            match op {
                TimedOp::Deposit(n) => (0..n).for_each(|_| {
                    budget.deposit();
                    deposits.push(now);
                }),
                TimedOp::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                TimedOp::Withdraw => {
                    let allowed = reserve + ratio * live(&deposits, now) as f64;
                    let expected = (live(&withdrawals, now) + 1) as f64 <= allowed;
                    prop_assert_eq!(budget.try_withdraw(), expected);
                    if expected {
                        withdrawals.push(now);
                    } else {
                        rejected += 1;
                    }
                }
            }
            let now = clock.now();
            let (d, w) = (live(&deposits, now), live(&withdrawals, now));
            let s = budget.snapshot();
            prop_assert_eq!(s.deposits(), d);
            prop_assert_eq!(s.withdrawals(), w);
            prop_assert_eq!(
                s.available(),
                (reserve + ratio * d as f64 - w as f64).max(0.0) as u64
            );
            prop_assert_eq!(s.rejected(), rejected);
        }
    }
}

#[derive(Clone, Debug)]
enum TimedOp {
    Deposit(u8),
    Withdraw,
    Advance(u16),
}

/// Steps of the clock from zero to past a whole window, most within a bucket or
/// a few.
fn timed_op() -> impl Strategy<Value = TimedOp> {
    prop_oneof![
        3 => (1u8..5).prop_map(TimedOp::Deposit),
        4 => Just(TimedOp::Withdraw),
        2 => (0u16..200).prop_map(TimedOp::Advance),
        1 => (0u16..2500).prop_map(TimedOp::Advance),
    ]
}
