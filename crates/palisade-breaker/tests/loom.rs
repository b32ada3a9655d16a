//! Concurrency models: run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p palisade-breaker --test loom --target-dir target/loom`.
//!
//! Each model has a broken twin that switches a deliberate bug on and must fail,
//! which shows the model reaches the interleaving the real code guards against.
#![cfg(loom)]
#![allow(missing_docs)]

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use loom::thread;
use palisade_breaker::__loom::{Bug, set};
use palisade_breaker::{Breaker, BreakerConfig, OpenDuration, State, WindowConfig};
use palisade_classify::Outcome;
use palisade_clock::ManualClock;

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(1))
        .window(WindowConfig::Count { size: 2 })
        .minimum_calls(1)
        .open(OpenDuration::fixed(Duration::from_secs(1)))
        .half_open_probes(1)
}

/// Two failures admitted in the same closed state race to open the breaker: it
/// opens exactly once.
fn opens_once() {
    loom::model(|| {
        let opens = StdArc::new(AtomicUsize::new(0));
        let counter = opens.clone();
        let breaker = Breaker::builder(config())
            .clock(ManualClock::new())
            .on_transition(move |t| {
                if t.to == State::Open {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap();
        let first = breaker.try_acquire_owned().unwrap();
        let second = breaker.try_acquire_owned().unwrap();
        let t = thread::spawn(move || second.record(Outcome::Permanent));
        first.record(Outcome::Permanent);
        t.join().unwrap();
        assert_eq!(opens.load(Ordering::SeqCst), 1, "opened more than once");
        // A second opening of the open breaker reports no transition (its state
        // does not change), but it starts a new generation.
        let s = breaker.snapshot();
        assert_eq!(
            (s.state, s.generation),
            (State::Open, 1),
            "opened more than once"
        );
    });
}

#[test]
fn concurrent_failures_open_once() {
    set(Bug::None);
    opens_once();
}

#[test]
#[should_panic(expected = "opened more than once")]
fn concurrent_failures_open_once_broken() {
    set(Bug::TripWithoutRecheck);
    opens_once();
}

/// Two calls arrive together after the open duration; one probe is allowed: at
/// most one is admitted and the breaker moves to half-open once.
fn probe_limit() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Breaker::builder(config())
            .clock(clock.clone())
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Permanent);
        clock.advance(Duration::from_secs(1));
        let other = breaker.clone();
        let t = thread::spawn(move || other.try_acquire_owned().ok());
        let mine = breaker.try_acquire_owned().ok();
        let theirs = t.join().unwrap();
        let admitted = usize::from(mine.is_some()) + usize::from(theirs.is_some());
        assert!(admitted <= 1, "{admitted} probes admitted, the limit is 1");
        assert_eq!(admitted, 1, "no probe admitted");
        let s = breaker.snapshot();
        assert_eq!(
            (s.state, s.generation, s.probes_in_flight),
            (State::HalfOpen, 2, 1)
        );
    });
}

#[test]
fn concurrent_calls_respect_the_probe_limit() {
    set(Bug::None);
    probe_limit();
}

#[test]
#[should_panic(expected = "the limit is 1")]
fn concurrent_calls_respect_the_probe_limit_broken() {
    set(Bug::HalfOpenWithoutRecheck);
    probe_limit();
}

/// A probe's outcome and a reset race: whichever comes first, the slot is freed
/// once and the reset's closed state is clean.
fn probe_vs_reset() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Breaker::builder(config())
            .clock(clock.clone())
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Permanent);
        clock.advance(Duration::from_secs(1));
        let probe = breaker.try_acquire_owned().unwrap();
        assert!(probe.is_probe());
        let other = breaker.clone();
        let t = thread::spawn(move || other.reset());
        probe.record(Outcome::Permanent);
        t.join().unwrap();
        let s = breaker.snapshot();
        // Either the failed probe reopened the breaker and the reset closed it, or
        // the reset came first and the probe's outcome was dropped.
        assert_eq!(s.state, State::Closed);
        assert!(s.generation == 3 || s.generation == 4);
        assert_eq!((s.calls, s.probes_in_flight), (0, 0));
    });
}

#[test]
fn a_probe_outcome_racing_a_reset_is_counted_at_most_once() {
    set(Bug::None);
    probe_vs_reset();
}

/// A probe ends while another call asks: whichever comes first, the freed slot is
/// not lost behind the lock-free "all slots taken" mark.
fn freed_slot() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Breaker::builder(config())
            .clock(clock.clone())
            .build()
            .unwrap();
        breaker.try_acquire().unwrap().record(Outcome::Permanent);
        clock.advance(Duration::from_secs(1));
        let probe = breaker.try_acquire_owned().unwrap();
        // Turned away: the breaker marks every slot taken.
        assert!(breaker.try_acquire().is_err());
        let t = thread::spawn(move || drop(probe));
        let raced = breaker.try_acquire_owned().ok();
        t.join().unwrap();
        let admitted = match raced {
            Some(p) => p,
            None => breaker
                .try_acquire_owned()
                .expect("the freed probe slot was lost"),
        };
        assert!(admitted.is_probe());
        assert_eq!(breaker.snapshot().probes_in_flight, 1);
    });
}

#[test]
fn a_freed_probe_slot_is_never_lost() {
    set(Bug::None);
    freed_slot();
}

#[test]
#[should_panic(expected = "the freed probe slot was lost")]
fn a_freed_probe_slot_is_never_lost_broken() {
    set(Bug::KeepBusy);
    freed_slot();
}
