//! Both windows against a naive model, on random sequences of records, clock
//! advances, snapshots and resets.

#[path = "model/mod.rs"]
mod model;

use std::time::Duration;

use model::{At, Op};
use palisade_window::{CountConfig, OutcomeKind, TimeConfig};
use proptest::prelude::*;

const DAY: u64 = 86_400_000_000_000;

fn nanos() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2_000,
        0u64..2_000_000,
        0u64..2_000_000_000,
        (0u32..40, any::<u8>()).prop_map(|(shift, m)| (m as u64) << shift),
    ]
}

fn op(width: u64) -> impl Strategy<Value = Op> {
    let kind = prop_oneof![
        4 => Just(OutcomeKind::Success),
        3 => Just(OutcomeKind::Failure),
        1 => Just(OutcomeKind::Ignored),
    ];
    let at = prop_oneof![
        6 => Just(At::Clock),
        1 => (0..width * 12).prop_map(At::Past),
        1 => (0..width * 3).prop_map(At::Future),
    ];
    prop_oneof![
        10 => (kind, proptest::option::of(nanos()), at)
            .prop_map(|(kind, elapsed, at)| Op::Record { kind, elapsed, at }),
        4 => prop_oneof![
            8 => (0..width * 2).prop_map(Op::Advance),
            1 => (0..width * 20).prop_map(Op::Advance),
            // Far enough to cross the sweeps of stale buckets.
            1 => (0u64..1 << 24).prop_map(move |n| Op::Advance(n * width)),
        ],
        3 => Just(Op::Snapshot),
        1 => Just(Op::Reset),
    ]
}

fn time_case() -> impl Strategy<Value = (TimeConfig, Vec<Op>)> {
    (
        1usize..=8,
        prop_oneof![
            Just(1_000u64),
            Just(7_000),
            Just(1_000_000),
            Just(250_000_000)
        ],
        proptest::option::of(nanos()),
    )
        .prop_flat_map(|(buckets, width, slow)| {
            let config = TimeConfig::new(buckets, Duration::from_nanos(width))
                .with_slow_call_threshold(slow.map(|n| Duration::from_nanos(n.min(DAY))));
            (Just(config), proptest::collection::vec(op(width), 0..120))
        })
}

fn count_case() -> impl Strategy<Value = (CountConfig, Vec<Op>)> {
    (1usize..=20, proptest::option::of(nanos())).prop_flat_map(|(size, slow)| {
        let config = CountConfig::new(size)
            .with_slow_call_threshold(slow.map(|n| Duration::from_nanos(n.min(DAY))));
        (Just(config), proptest::collection::vec(op(1000), 0..120))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn time_window_matches_the_model((config, mut ops) in time_case()) {
        ops.push(Op::Snapshot);
        if let Err(e) = model::check_time(config.clone(), &ops) {
            return Err(TestCaseError::fail(format!("{e}\nconfig: {config:?}")));
        }
    }

    #[test]
    fn count_window_matches_the_model((config, mut ops) in count_case()) {
        ops.push(Op::Snapshot);
        if let Err(e) = model::check_count(config.clone(), &ops) {
            return Err(TestCaseError::fail(format!("{e}\nconfig: {config:?}")));
        }
    }
}

#[test]
fn decoded_fuzz_inputs_run() {
    // The fuzz targets' decoder, on a few fixed inputs.
    for bytes in [
        &b""[..],
        b"\x03\x05\x01\x00",
        b"\x02\x10\x02\x01\x05\x03\x80\x01\x06\x05\x00\x00\x10\x00\x06",
    ] {
        let mut d = model::Decoder::new(bytes);
        if let Some(config) = d.time_config() {
            model::check_time(config, &d.ops()).unwrap();
        }
        let mut d = model::Decoder::new(bytes);
        if let Some(config) = d.count_config() {
            model::check_count(config, &d.ops()).unwrap();
        }
    }
}
