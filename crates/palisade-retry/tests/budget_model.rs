//! The retry budget against a reference model: random deposits, withdrawals and
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

    /// With a share of deposits and steady traffic (a withdrawal attempt, and so a
    /// sample, in every bucket), the budget never grants more than the share of the
    /// deposits of the last window plus one bucket's worth.
    #[test]
    fn the_share_stays_within_a_bucket_of_exact(
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
            // Over the last 10 steps (the window) plus one step of slack for the
            // interpolation of deposits between samples.
            let recent = history.iter().rev().take(10);
            let withdrawn: u64 = recent.clone().map(|(_, w)| w).sum();
            let deposited: u64 = history.iter().rev().take(11).map(|(d, _)| d).sum();
            prop_assert!(
                withdrawn as f64 <= 0.5 * deposited as f64 + 1.0,
                "withdrew {} with {} deposits",
                withdrawn,
                deposited
            );
            clock.advance(Duration::from_secs(1));
        }
    }
}
