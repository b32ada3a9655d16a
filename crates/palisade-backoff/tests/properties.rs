//! Properties every schedule keeps, over random configurations.

use std::time::Duration;

use palisade_backoff::{Backoff, BackoffBuilder, Jitter};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        (0.0f64..=1.0).prop_map(Jitter::Proportional),
    ]
}

/// A curve builder and its initial delay, in nanoseconds up to about 17 minutes.
fn curve() -> impl Strategy<Value = BackoffBuilder> {
    let ns = 0u64..1 << 40;
    prop_oneof![
        ns.clone()
            .prop_map(|i| Backoff::constant(Duration::from_nanos(i))),
        (ns.clone(), ns.clone())
            .prop_map(|(i, s)| Backoff::linear(Duration::from_nanos(i), Duration::from_nanos(s))),
        // Whole factors grow by an integer multiply, the others in floating point.
        (
            ns.clone(),
            prop_oneof![1.0f64..10.0, (1u32..10).prop_map(f64::from)]
        )
            .prop_map(|(i, f)| Backoff::exponential(Duration::from_nanos(i)).factor(f)),
        ns.prop_map(|i| Backoff::fibonacci(Duration::from_nanos(i))),
    ]
}

fn backoff() -> impl Strategy<Value = Backoff> {
    (
        curve(),
        jitter(),
        0u64..1 << 42,
        1u32..40,
        proptest::option::of(1u64..1 << 44),
    )
        .prop_filter_map(
            "initial above max_delay",
            |(b, j, extra, attempts, elapsed)| {
                let probe = b
                    .clone()
                    .jitter(Jitter::None)
                    .max_delay(Duration::from_nanos(u64::MAX))
                    .max_attempts(1);
                let initial = probe.build().ok()?.initial();
                let mut b = b
                    .jitter(j)
                    .max_delay(initial + Duration::from_nanos(extra))
                    .max_attempts(attempts);
                if let Some(e) = elapsed {
                    b = b.max_elapsed(Duration::from_nanos(e));
                }
                b.build().ok()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_delay_is_inside_its_envelope(b in backoff(), seed in any::<u64>()) {
        let bases: Vec<Duration> = b.to_builder().jitter(Jitter::None).max_elapsed(Duration::from_nanos(u64::MAX)).build().unwrap().iter().collect();
        let mut count = 0;
        for (delay, base) in b.iter_seeded(seed).zip(&bases) {
            prop_assert!(delay <= b.max_delay());
            let envelope = b.jitter().envelope(*base, b.max_delay());
            prop_assert!(envelope.contains(&delay), "{delay:?} outside {envelope:?}");
            count += 1;
        }
        prop_assert!(count < b.max_attempts() as usize);
    }

    #[test]
    fn the_unjittered_curve_never_decreases(b in backoff()) {
        let plain = b.to_builder().jitter(Jitter::None).build().unwrap();
        let delays: Vec<Duration> = plain.iter().collect();
        prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        if plain.max_elapsed().is_none() {
            prop_assert_eq!(delays.len() as u32, plain.max_attempts() - 1);
        }
    }

    #[test]
    fn internal_iteration_yields_what_next_does(b in backoff(), seed in any::<u64>()) {
        // A `for` loop calls `next`.
        let mut one_by_one = Vec::new();
        for d in b.iter_seeded(seed) {
            one_by_one.push(d);
        }
        let folded = b.iter_seeded(seed).fold(Vec::new(), |mut v, d| {
            v.push(d);
            v
        });
        prop_assert_eq!(folded, one_by_one);
    }

    #[test]
    fn the_sum_never_exceeds_max_elapsed(b in backoff(), seed in any::<u64>()) {
        let mut delays = b.iter_seeded(seed);
        let sum: Duration = delays.by_ref().sum();
        prop_assert_eq!(sum, delays.elapsed());
        if let Some(cap) = b.max_elapsed() {
            prop_assert!(sum <= cap, "{sum:?} > {cap:?}");
        }
    }

    #[test]
    fn decorrelated_stays_between_base_and_cap(
        base in 1u64..1 << 30,
        extra in 0u64..1 << 34,
        seed in any::<u64>(),
    ) {
        let base = Duration::from_nanos(base);
        let max = base + Duration::from_nanos(extra);
        let b = Backoff::decorrelated(base).max_delay(max).max_attempts(50).build().unwrap();
        let mut previous = base;
        for d in b.iter_seeded(seed) {
            prop_assert!(base <= d && d <= max);
            prop_assert!(d <= (previous * 3).min(max));
            previous = d;
        }
    }
}

/// Draws many delays of a one-second curve with a fixed seed and checks the share
/// that lands in each tenth of the envelope: the jitter stays inside its envelope
/// and fills it uniformly. With 20 000 draws, each tenth's expected share is 10 %
/// with a standard deviation of 0.2 %; the bound of ±1.5 % is over seven of them.
#[test]
fn jitter_fills_its_envelope_uniformly() {
    let second = Duration::from_secs(1);
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Proportional(0.25)] {
        let b = Backoff::constant(second)
            .max_delay(Duration::from_secs(2))
            .jitter(jitter)
            .max_attempts(20_001)
            .build()
            .unwrap();
        let envelope = jitter.envelope(second, b.max_delay());
        let (lo, hi) = (envelope.start().as_secs_f64(), envelope.end().as_secs_f64());
        let mut tenths = [0u32; 10];
        let mut sum = 0.0;
        for d in b.iter_seeded(0x5eed) {
            assert!(
                envelope.contains(&d),
                "{jitter:?}: {d:?} outside {envelope:?}"
            );
            let x = (d.as_secs_f64() - lo) / (hi - lo);
            tenths[((x * 10.0) as usize).min(9)] += 1;
            sum += d.as_secs_f64();
        }
        for (i, n) in tenths.iter().enumerate() {
            let share = f64::from(*n) / 20_000.0;
            assert!(
                (0.085..0.115).contains(&share),
                "{jitter:?}: tenth {i} has {share}"
            );
        }
        let mean = sum / 20_000.0;
        assert!(
            (mean - (lo + hi) / 2.0).abs() < 0.01,
            "{jitter:?}: mean {mean}"
        );
    }
}

#[test]
fn no_jitter_is_exact() {
    let b = Backoff::exponential(Duration::from_millis(1))
        .jitter(Jitter::None)
        .max_attempts(5)
        .build()
        .unwrap();
    let a: Vec<Duration> = b.iter().collect();
    assert_eq!(a, b.iter_seeded(1).collect::<Vec<_>>());
    assert_eq!(a, [1, 2, 4, 8].map(Duration::from_millis));
}
