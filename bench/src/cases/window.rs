//! Sliding windows: recording an outcome, and reading a snapshot.
//!
//! No peer exposes its window on its own (recloser's ring buffer and the breakers'
//! windows are private). The nearest is recloser's synchronous `Recloser::call` of a
//! closure that returns `Ok`: a closed breaker's per-call cost, which is mostly its
//! ring buffer's record of the outcome (plus a state check and an epoch pin). It is
//! the peer of "record a success"; the other rows have floors only.
//!
//! The two-thread rows come with a reference row: each thread adding to an
//! `AtomicU64` of its own, on cache lines of its own, in the same harness. Its
//! throughput relative to one thread is the most any striped counter can show on the
//! machine at hand (a loaded or shared machine gives less than 2×).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, TokioClock};
use palisade_window::{
    CountConfig, CountWindow, OutcomeKind, TimeConfig, TimeWindow, Window, WindowSnapshot,
};

use super::{Gap, is_ok};
use crate::harness::{Case, Floor, Role, bench_parallel_sync, bench_sync};

const RECORD: &str = "record a success";
const RECORD_DURATION: &str = "record a success with its duration";
const RECORD_TWO: &str = "record a success, 2 threads";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_100: &str = "snapshot, 100 buckets";

/// The duration recorded with each call: a typical fast call, below the threshold.
const ELAPSED: Duration = Duration::from_micros(250);
/// The slow-call threshold of the windows that record durations.
const SLOW: Duration = Duration::from_secs(1);

pub(super) const GAPS: &[Gap] = &[];

/// The label of the reference rows: what two threads get from this machine when each
/// adds to a word of its own, the ceiling of any striped counter's scaling.
const OWN_WORD: &str = "AtomicU64 per thread";

/// A counter on cache lines of its own.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

fn count() -> CountWindow {
    CountWindow::new(CountConfig::default()).expect("the default count window")
}

fn time() -> TimeWindow<TokioClock> {
    TimeWindow::new(TimeConfig::default(), TokioClock).expect("the default time window")
}

fn count_with_threshold() -> CountWindow {
    let config = CountConfig::default().with_slow_call_threshold(Some(SLOW));
    CountWindow::new(config).expect("a valid count window")
}

fn time_with_threshold() -> TimeWindow<TokioClock> {
    let config = TimeConfig::default().with_slow_call_threshold(Some(SLOW));
    TimeWindow::new(config, TokioClock).expect("a valid time window")
}

/// The calls each of the two threads records into [`time_100_buckets`].
const FILL_PER_THREAD: u64 = 2_000;
/// The calls [`time_100_buckets`] holds: all of them lie in its window.
const FILLED_CALLS: u64 = 2 * FILL_PER_THREAD;

/// A window of 100 buckets of 100 ms, filled from two threads (so that both hold
/// counters of their own) with calls spread over the whole window, a tenth of them
/// failed and each with a duration from 1 µs to 10 ms. Its clock stands still, so
/// that every bucket stays in the window for the whole run, as under steady traffic.
fn time_100_buckets() -> TimeWindow<ManualClock> {
    let config = TimeConfig::new(100, Duration::from_millis(100))
        .with_slow_call_threshold(Some(Duration::from_millis(5)));
    let clock = ManualClock::new();
    // An hour in, so that the whole window lies after the clock's zero.
    clock.advance(Duration::from_secs(3600));
    let window = TimeWindow::new(config, clock.clone()).expect("a valid time window");
    let now = clock.now();
    // Both threads stay alive until both are done, so that they hold distinct
    // stripes.
    let done = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            let window = &window;
            let done = &done;
            scope.spawn(move || {
                for i in 0..FILL_PER_THREAD {
                    let kind = if (i + thread) % 10 == 0 {
                        OutcomeKind::Failure
                    } else {
                        OutcomeKind::Success
                    };
                    let at = now - Duration::from_millis(i * 5 % 9_900);
                    let elapsed = Duration::from_micros(1 + i * 37 % 10_000);
                    window.record_with_duration_at(kind, elapsed, at);
                }
                done.wait();
            });
        }
    });
    window
}

/// The check of the rows that record successes below the slow-call threshold: the
/// window holds calls, none failed or slow.
fn holds_fast_successes(s: &WindowSnapshot) -> bool {
    s.calls() > 0 && s.failures() == 0 && s.slow_calls() == 0
}

/// [`holds_fast_successes`], with the calls' durations in the latency histogram.
fn holds_timed_successes(s: &WindowSnapshot) -> bool {
    holds_fast_successes(s) && s.latency().is_some_and(|l| l.count() > 0)
}

pub(super) fn cases() -> Vec<Case> {
    let shared_count = Arc::new(count());
    let shared_time = Arc::new(time());
    vec![
        Case::new(
            "window",
            RECORD,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_sync!(
                count(),
                |s| s.record(OutcomeKind::Success),
                probe = |s| s.snapshot(),
                holds_fast_successes
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("the last 100 calls"),
        Case::new(
            "window",
            RECORD,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(
                time(),
                |s| s.record(OutcomeKind::Success),
                probe = |s| s.snapshot(),
                holds_fast_successes
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("10 × 1 s buckets; includes a coarse clock reading"),
        Case::new(
            "window",
            RECORD,
            "recloser",
            Role::Peer,
            bench_sync!(
                super::breaker::recloser_sync(),
                |s| s.call(|| Ok::<u64, ()>(1)),
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .note("Recloser::call of a closure returning Ok; closed, a ring of the last 100 calls"),
        Case::new(
            "window",
            RECORD_DURATION,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_sync!(
                count_with_threshold(),
                |s| s.record_with_duration(OutcomeKind::Success, ELAPSED),
                probe = |s| s.snapshot(),
                holds_fast_successes
            ),
        )
        .floor(Floor::Atomic)
        .note("the last 100 calls; compared with a 1 s slow-call threshold"),
        Case::new(
            "window",
            RECORD_DURATION,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(
                time_with_threshold(),
                |s| s.record_with_duration(OutcomeKind::Success, ELAPSED),
                probe = |s| s.snapshot(),
                holds_timed_successes
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("10 × 1 s buckets, 1 s slow-call threshold; the call and its latency bin"),
        Case::new(
            "window",
            RECORD_TWO,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_parallel_sync!(
                2,
                move || Arc::clone(&shared_count),
                |s| s.record(OutcomeKind::Success),
                probe = |s| s.snapshot(),
                holds_fast_successes
            ),
        )
        .threads(2, RECORD),
        Case::new(
            "window",
            RECORD_TWO,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_parallel_sync!(
                2,
                move || Arc::clone(&shared_time),
                |s| s.record(OutcomeKind::Success),
                probe = |s| s.snapshot(),
                holds_fast_successes
            ),
        )
        .threads(2, RECORD),
        Case::new(
            "window",
            RECORD,
            OWN_WORD,
            Role::Reference,
            bench_sync!(
                Box::new(Padded::default()),
                |s| s.0.fetch_add(1, Ordering::Relaxed),
                probe = |s| s.0.load(Ordering::Relaxed),
                |r: &u64| *r > 0
            ),
        )
        .floor(Floor::Atomic)
        .note("the one-thread base of the 2-thread reference row"),
        Case::new(
            "window",
            RECORD_TWO,
            OWN_WORD,
            Role::Reference,
            bench_parallel_sync!(
                2,
                || Box::new(Padded::default()),
                |s| s.0.fetch_add(1, Ordering::Relaxed),
                probe = |s| s.0.load(Ordering::Relaxed),
                |r: &u64| *r > 0
            ),
        )
        .threads(2, RECORD)
        .note("each thread adds to its own padded word: the scaling this machine allows"),
        Case::new(
            "window",
            SNAPSHOT,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_sync!(count(), |s| s.snapshot().calls(), |r: &u64| *r == 0),
        ),
        Case::new(
            "window",
            SNAPSHOT,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(time(), |s| s.snapshot().calls(), |r: &u64| *r == 0),
        )
        .note("10 × 1 s buckets, empty"),
        Case::new(
            "window",
            SNAPSHOT_100,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(time_100_buckets(), |s| s.snapshot().calls(), |r: &u64| {
                *r == FILLED_CALLS
            }),
        )
        .note("100 × 100 ms buckets, all holding calls with latencies from two threads"),
    ]
}
