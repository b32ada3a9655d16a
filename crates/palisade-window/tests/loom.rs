//! Concurrency models, explored by loom: `RUSTFLAGS="--cfg loom" cargo test --release
//! -p palisade-window --test loom`. Each model has a twin with a deliberate bug,
//! which loom must catch, so a model cannot pass by exploring too little.
#![cfg(loom)]

use std::sync::Mutex;
use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use palisade_clock::{Clock, ManualClock};
use palisade_window::__loom::{Bug, set};
use palisade_window::{
    CountConfig, CountWindow, OutcomeKind, TimeConfig, TimeWindow, Window, WindowSnapshot,
};

/// The bug switch is process-wide: one model at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn model(bug: Bug, f: impl Fn() + Sync + Send + 'static) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    set(bug);
    struct Unset;
    impl Drop for Unset {
        fn drop(&mut self) {
            set(Bug::None);
        }
    }
    let _unset = Unset;
    loom::model(f);
}

fn time_window(clock: &ManualClock) -> TimeWindow<ManualClock> {
    let config = TimeConfig::new(1, Duration::from_secs(1));
    TimeWindow::new(config, clock.clone()).unwrap()
}

fn assert_bounded(s: &WindowSnapshot, capacity: u64) {
    assert!(s.calls() <= capacity, "{s:?}");
    assert!(s.failures() <= s.calls(), "{s:?}");
    assert!((0.0..=1.0).contains(&s.failure_rate()), "{s:?}");
}

// Record / record: two failures recorded at once into the same bucket both count.

fn time_record_record() {
    let clock = ManualClock::new();
    let window = Arc::new(time_window(&clock));
    let now = clock.now();
    // The first call into a stripe makes the bucket its current one; the calls
    // after it take the path of one addition per counter, raced here.
    window.record_at(OutcomeKind::Success, now);
    let other = {
        let window = window.clone();
        thread::spawn(move || window.record_at(OutcomeKind::Failure, now))
    };
    window.record_at(OutcomeKind::Failure, now);
    other.join().unwrap();
    let s = window.snapshot();
    assert_eq!(
        (s.calls(), s.failures(), s.total_calls()),
        (3, 2, 3),
        "{s:?}"
    );
}

#[test]
fn time_window_record_record() {
    model(Bug::None, time_record_record);
}

#[test]
#[should_panic]
fn time_window_record_record_catches_lost_updates() {
    model(Bug::LostUpdate, time_record_record);
}

fn count_record_record() {
    let window = Arc::new(CountWindow::new(CountConfig::new(2)).unwrap());
    let other = {
        let window = window.clone();
        thread::spawn(move || window.record(OutcomeKind::Failure))
    };
    window.record(OutcomeKind::Failure);
    other.join().unwrap();
    let s = window.snapshot();
    assert_eq!(
        (s.calls(), s.failures(), s.total_calls()),
        (2, 2, 2),
        "{s:?}"
    );
}

#[test]
fn count_window_record_record() {
    model(Bug::None, count_record_record);
}

#[test]
#[should_panic]
fn count_window_record_record_catches_lost_updates() {
    model(Bug::LostUpdate, count_record_record);
}

// Record / roll-over: the bucket holds a call of the previous epoch; two calls of the
// new epoch arrive at once, and whichever resets the bucket, neither is lost.

fn record_rollover() {
    let clock = ManualClock::new();
    let window = Arc::new(time_window(&clock));
    window.record(OutcomeKind::Failure);
    clock.advance(Duration::from_secs(1));
    let other = {
        let window = window.clone();
        thread::spawn(move || window.record(OutcomeKind::Success))
    };
    window.record(OutcomeKind::Success);
    other.join().unwrap();
    let s = window.snapshot();
    assert_eq!((s.calls(), s.failures()), (2, 0), "{s:?}");
    assert_eq!((s.total_calls(), s.total_failures()), (3, 1), "{s:?}");
}

#[test]
fn time_window_record_rollover() {
    model(Bug::None, record_rollover);
}

#[test]
#[should_panic]
fn time_window_record_rollover_catches_split_resets() {
    model(Bug::SplitRollover, record_rollover);
}

// Record / snapshot: a snapshot taken while calls are recorded never shows more calls
// than the window holds, more failures than calls, or a rate outside [0, 1].

fn count_record_snapshot() {
    let window = Arc::new(CountWindow::new(CountConfig::new(1)).unwrap());
    let failure = {
        let window = window.clone();
        thread::spawn(move || window.record(OutcomeKind::Failure))
    };
    let success = {
        let window = window.clone();
        thread::spawn(move || window.record(OutcomeKind::Success))
    };
    assert_bounded(&window.snapshot(), 1);
    failure.join().unwrap();
    success.join().unwrap();
    let s = window.snapshot();
    assert_eq!(s.calls(), 1, "{s:?}");
    assert_eq!(s.total_calls(), 2, "{s:?}");
}

#[test]
fn count_window_record_snapshot() {
    model(Bug::None, count_record_snapshot);
}

#[test]
#[should_panic]
fn count_window_record_snapshot_catches_unbounded_counts() {
    model(Bug::NoClamp, count_record_snapshot);
}

fn time_record_snapshot() {
    let clock = ManualClock::new();
    let window = Arc::new(time_window(&clock));
    // A stripe in use, so that the snapshot reads its counters while the other
    // thread adds to them one after the other.
    window.record(OutcomeKind::Failure);
    let other = {
        let window = window.clone();
        thread::spawn(move || window.record(OutcomeKind::Failure))
    };
    assert_bounded(&window.snapshot(), 2);
    other.join().unwrap();
    let s = window.snapshot();
    assert_eq!((s.calls(), s.failures()), (2, 2), "{s:?}");
}

#[test]
fn time_window_record_snapshot() {
    model(Bug::None, time_record_snapshot);
}

#[test]
#[should_panic]
fn time_window_record_snapshot_catches_unbounded_counts() {
    model(Bug::NoClamp, time_record_snapshot);
}
