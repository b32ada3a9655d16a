#![allow(clippy::disallowed_methods)] // a test is the root
//! The outlier detector's state machine against a plain reference model: random
//! successes, failures, passing time, removals and insertions; after every step
//! every endpoint's state, ejection count and the number ejected agree.

use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_endpoint::{EndpointHealth, EndpointState, OutlierConfig, Outliers};
use palisade_window::OutcomeKind;
use proptest::prelude::*;

const RUN: u32 = 3;
const BASE: u64 = 10_000;
const MAX: u64 = 35_000;
const PROBATION: u32 = 2;

fn config() -> OutlierConfig {
    OutlierConfig::default()
        .with_consecutive_failures(Some(RUN))
        .with_failure_rate(None)
        .with_latency_factor(None)
        .with_interval(Duration::from_secs(3600))
        .with_ejection(Duration::from_millis(BASE), Duration::from_millis(MAX))
        .with_max_ejected_percent(50.0)
        .with_probation_successes(PROBATION)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Healthy,
    Ejected { until: u64 },
    Probation,
}

#[derive(Clone, Debug)]
struct Model {
    consecutive: u32,
    mode: Mode,
    ejections: u32,
    successes: u32,
}

impl Model {
    fn new() -> Self {
        Model {
            consecutive: 0,
            mode: Mode::Healthy,
            ejections: 0,
            successes: 0,
        }
    }
}

fn max_ejected(n: usize) -> usize {
    if n < 2 { 0 } else { (n / 2).clamp(1, n - 1) }
}

fn expire(models: &mut [Model], now: u64) {
    for m in models {
        if let Mode::Ejected { until } = m.mode {
            if until <= now {
                m.mode = Mode::Probation;
                m.consecutive = 0;
                m.successes = 0;
            }
        }
    }
}

fn try_eject(models: &mut [Model], i: usize, now: u64) {
    let ejected = models
        .iter()
        .filter(|m| matches!(m.mode, Mode::Ejected { .. }))
        .count();
    if ejected >= max_ejected(models.len()) {
        models[i].successes = 0;
        return;
    }
    let m = &mut models[i];
    m.ejections += 1;
    m.mode = Mode::Ejected {
        until: now + (BASE * m.ejections as u64).min(MAX),
    };
    m.consecutive = 0;
    m.successes = 0;
}

#[derive(Clone, Debug)]
enum Op {
    Success(usize),
    Failure(usize),
    Advance(u64),
    Remove(usize),
    Insert,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..8usize).prop_map(Op::Success),
        6 => (0..8usize).prop_map(Op::Failure),
        3 => (0..40_000u64).prop_map(Op::Advance),
        1 => (0..8usize).prop_map(Op::Remove),
        1 => Just(Op::Insert),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn detector_follows_the_model(ops in proptest::collection::vec(op(), 1..200)) {
        let clock = ManualClock::new();
        let start = clock.now();
        let outliers = Outliers::builder(config()).clock(clock.clone()).build().unwrap();
        let mut real: Vec<EndpointHealth<ManualClock>> = (0..4).map(|i| outliers.insert(i)).collect();
        let mut models: Vec<Model> = (0..4).map(|_| Model::new()).collect();
        let ms = |t: Timestamp| t.saturating_duration_since(start).as_millis() as u64;
        for op in ops {
            let now = clock.now();
            let t = ms(now);
            expire(&mut models, t);
            match op {
                Op::Success(i) if i < real.len() => {
                    real[i].record(OutcomeKind::Success, None, now);
                    let m = &mut models[i];
                    if !matches!(m.mode, Mode::Ejected { .. }) {
                        m.consecutive = 0;
                        if m.mode == Mode::Probation {
                            m.successes += 1;
                            if m.successes >= PROBATION {
                                m.mode = Mode::Healthy;
                                m.ejections = 0;
                                m.successes = 0;
                            }
                        }
                    }
                }
                Op::Failure(i) if i < real.len() => {
                    real[i].record(OutcomeKind::Failure, None, now);
                    if !matches!(models[i].mode, Mode::Ejected { .. }) {
                        models[i].consecutive += 1;
                        let probation = models[i].mode == Mode::Probation;
                        if probation || models[i].consecutive >= RUN {
                            try_eject(&mut models, i, t);
                        }
                    }
                }
                Op::Advance(d) => clock.advance(Duration::from_millis(d)),
                Op::Remove(i) if i < real.len() => {
                    outliers.remove(&real.remove(i));
                    models.remove(i);
                }
                Op::Insert => {
                    real.push(outliers.insert(real.len()));
                    models.push(Model::new());
                }
                _ => {}
            }
            let now = clock.now();
            outliers.tick(now);
            expire(&mut models, ms(now));
            for (i, (r, m)) in real.iter().zip(&models).enumerate() {
                let state = match r.state() {
                    EndpointState::Healthy => Mode::Healthy,
                    EndpointState::Probation => Mode::Probation,
                    EndpointState::Ejected { until } => Mode::Ejected { until: ms(until) },
                    other => panic!("unknown state {other:?}"),
                };
                prop_assert_eq!(state, m.mode, "endpoint {} state", i);
                prop_assert_eq!(r.ejections(), m.ejections, "endpoint {} ejections", i);
                prop_assert_eq!(r.is_available(), !matches!(m.mode, Mode::Ejected { .. }));
            }
            let ejected = models.iter().filter(|m| matches!(m.mode, Mode::Ejected { .. })).count();
            prop_assert_eq!(outliers.ejected(), ejected);
        }
    }
}

#[test]
fn an_ejection_grows_with_each_failed_probation_and_is_capped() {
    let clock = ManualClock::new();
    let outliers = Outliers::builder(config())
        .clock(clock.clone())
        .build()
        .unwrap();
    let a = outliers.insert("a");
    let _b = outliers.insert("b");
    let mut lengths = Vec::new();
    for _ in 0..5 {
        for _ in 0..RUN {
            a.record(OutcomeKind::Failure, None, clock.now());
            if !a.is_available() {
                break;
            }
        }
        let EndpointState::Ejected { until } = a.state() else {
            panic!("not ejected")
        };
        lengths.push(until.saturating_duration_since(clock.now()));
        clock.advance(until.saturating_duration_since(clock.now()));
        outliers.tick(clock.now());
        assert_eq!(a.state(), EndpointState::Probation);
    }
    let s = |ms| Duration::from_millis(ms);
    assert_eq!(
        lengths,
        [s(10_000), s(20_000), s(30_000), s(35_000), s(35_000)]
    );
    // Passing probation forgives the ejections.
    for _ in 0..PROBATION {
        a.record(OutcomeKind::Success, None, clock.now());
    }
    assert_eq!(a.state(), EndpointState::Healthy);
    assert_eq!(a.ejections(), 0);
}

#[test]
fn never_more_than_the_share_and_never_all() {
    let clock = ManualClock::new();
    let outliers = Outliers::builder(config())
        .clock(clock.clone())
        .build()
        .unwrap();
    let all: Vec<_> = (0..5).map(|i| outliers.insert(i)).collect();
    for e in &all {
        for _ in 0..RUN * 3 {
            e.record(OutcomeKind::Failure, None, clock.now());
        }
    }
    assert_eq!(outliers.ejected(), 2, "50 % of 5, rounded down");
    let single = Outliers::builder(config())
        .clock(clock.clone())
        .build()
        .unwrap();
    let only = single.insert("only");
    for _ in 0..RUN * 3 {
        only.record(OutcomeKind::Failure, None, clock.now());
    }
    assert!(only.is_available(), "a lone endpoint is never ejected");
}

#[test]
fn the_rate_and_latency_rules_eject_on_the_interval() {
    let clock = ManualClock::new();
    let config = OutlierConfig::default()
        .with_consecutive_failures(None)
        .with_minimum_calls(10)
        .with_interval(Duration::from_secs(1));
    let outliers = Outliers::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let all: Vec<_> = (0..5).map(|i| outliers.insert(i)).collect();
    for round in 0..20 {
        for (i, e) in all.iter().enumerate() {
            let failed = i == 0 && round % 2 == 0;
            let kind = if failed {
                OutcomeKind::Failure
            } else {
                OutcomeKind::Success
            };
            let took = if i == 1 {
                Duration::from_millis(100)
            } else {
                Duration::from_millis(10)
            };
            e.record(kind, Some(took), clock.now());
        }
    }
    assert!(
        all.iter().all(|e| e.is_available()),
        "judged only every interval"
    );
    clock.advance(Duration::from_secs(1));
    outliers.tick(clock.now());
    assert!(!all[0].is_available(), "50 % failures: ejected");
    assert!(!all[1].is_available(), "10× slower: ejected");
    assert!(all[2..].iter().all(|e| e.is_available()));
}
