//! Sliding windows: recording an outcome, and reading a snapshot. No peer exposes
//! its window on its own (recloser's ring buffer and the breakers' windows are
//! private), so these rows have floors only.

use palisade_clock::TokioClock;
use palisade_window::{CountConfig, CountWindow, OutcomeKind, TimeConfig, TimeWindow, Window};

use super::Gap;
use crate::harness::{Case, Floor, Role, bench_parallel, bench_sync};

const RECORD: &str = "record a success";
const RECORD_TWO: &str = "record a success, 2 threads";
const SNAPSHOT: &str = "snapshot";

pub(super) const GAPS: &[Gap] = &[];

fn count() -> CountWindow {
    CountWindow::new(CountConfig::default()).expect("the default count window")
}

fn time() -> TimeWindow<TokioClock> {
    TimeWindow::new(TimeConfig::default(), TokioClock).expect("the default time window")
}

pub(super) fn cases() -> Vec<Case> {
    let shared_count = std::sync::Arc::new(count());
    let shared_time = std::sync::Arc::new(time());
    vec![
        Case::new(
            "window",
            RECORD,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_sync!(count(), |s| s.record(OutcomeKind::Success), |_r: &()| true),
        )
        .floor(Floor::Atomic)
        .key()
        .note("the last 100 calls"),
        Case::new(
            "window",
            RECORD,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(time(), |s| s.record(OutcomeKind::Success), |_r: &()| true),
        )
        .floor(Floor::Atomic)
        .key()
        .note("10 × 1 s buckets; includes a coarse clock reading"),
        Case::new(
            "window",
            RECORD_TWO,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_parallel!(
                2,
                move || std::sync::Arc::clone(&shared_count),
                |s| async { s.record(OutcomeKind::Success) },
                |_r: &()| true
            ),
        )
        .threads(2, RECORD),
        Case::new(
            "window",
            RECORD_TWO,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_parallel!(
                2,
                move || std::sync::Arc::clone(&shared_time),
                |s| async { s.record(OutcomeKind::Success) },
                |_r: &()| true
            ),
        )
        .threads(2, RECORD),
        Case::new(
            "window",
            SNAPSHOT,
            "palisade-window CountWindow",
            Role::Palisade,
            bench_sync!(count(), |s| s.snapshot().calls(), |_r: &u64| true),
        ),
        Case::new(
            "window",
            SNAPSHOT,
            "palisade-window TimeWindow",
            Role::Palisade,
            bench_sync!(time(), |s| s.snapshot().calls(), |_r: &u64| true),
        ),
    ]
}
