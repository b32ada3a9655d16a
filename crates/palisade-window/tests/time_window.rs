//! The time-based window in virtual time.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::sync::Arc;
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp, TokioClock};
use palisade_window::{OutcomeKind::*, TimeConfig, TimeWindow, Window, WindowSnapshot};

fn window(
    buckets: usize,
    width_ms: u64,
    slow_ms: Option<u64>,
) -> (ManualClock, TimeWindow<ManualClock>) {
    let clock = ManualClock::new();
    let config = TimeConfig::new(buckets, Duration::from_millis(width_ms))
        .with_slow_call_threshold(slow_ms.map(Duration::from_millis));
    (clock.clone(), TimeWindow::new(config, clock).unwrap())
}

fn counts(s: &WindowSnapshot) -> (u64, u64, u64) {
    (s.calls(), s.failures(), s.slow_calls())
}

#[test]
fn calls_leave_the_window_bucket_by_bucket() {
    let (clock, w) = window(3, 100, None);
    w.record(Failure); // bucket 0
    clock.advance(Duration::from_millis(100));
    w.record(Success); // bucket 1
    w.record(Success);
    clock.advance(Duration::from_millis(150));
    w.record(Failure); // bucket 2, at 250 ms
    assert_eq!(counts(&w.snapshot()), (4, 2, 0));
    clock.advance(Duration::from_millis(50)); // 300 ms: bucket 0 has left
    assert_eq!(counts(&w.snapshot()), (3, 1, 0));
    clock.advance(Duration::from_millis(100)); // 400 ms: bucket 1 has left
    assert_eq!(counts(&w.snapshot()), (1, 1, 0));
    clock.advance(Duration::from_millis(100));
    let s = w.snapshot();
    assert!(s.is_empty());
    assert_eq!((s.total_calls(), s.total_failures()), (4, 2));
}

#[test]
fn a_record_after_a_long_pause_resets_its_bucket() {
    let (clock, w) = window(2, 1000, None);
    for _ in 0..5 {
        w.record(Failure);
    }
    // Two laps later the same bucket comes round again.
    clock.advance(Duration::from_secs(4));
    w.record(Success);
    let s = w.snapshot();
    assert_eq!(counts(&s), (1, 0, 0));
    assert_eq!((s.total_calls(), s.total_failures()), (6, 5));
}

#[test]
fn slow_calls_and_latency() {
    let (clock, w) = window(10, 1000, Some(200));
    w.record_with_duration(Success, Duration::from_millis(10));
    w.record_with_duration(Success, Duration::from_millis(200));
    w.record_with_duration(Failure, Duration::from_millis(900));
    w.record(Success);
    let s = w.snapshot();
    assert_eq!(counts(&s), (4, 1, 2));
    assert_eq!(s.slow_call_rate(), 0.5);
    let l = s.latency().unwrap();
    assert_eq!(l.count(), 3);
    let p50 = l.p50().unwrap();
    assert!(
        p50 >= Duration::from_millis(200) && p50 <= Duration::from_millis(250),
        "{p50:?}"
    );
    let max = l.max().unwrap();
    assert!(
        max >= Duration::from_millis(900) && max <= Duration::from_millis(1125),
        "{max:?}"
    );

    // Latency leaves with its bucket.
    clock.advance(Duration::from_secs(5));
    w.record_with_duration(Success, Duration::from_micros(50));
    assert_eq!(w.snapshot().latency().unwrap().count(), 4);
    clock.advance(Duration::from_secs(5));
    let s = w.snapshot();
    let l = s.latency().unwrap();
    assert_eq!(l.count(), 1);
    assert!(l.p99().unwrap() <= Duration::from_micros(63));
    assert_eq!(s.total_slow_calls(), 2);
}

#[test]
fn ignored_outcomes_are_not_calls() {
    let (_clock, w) = window(5, 10, Some(1));
    w.record(Ignored);
    w.record_with_duration(Ignored, Duration::from_secs(1));
    let s = w.snapshot();
    assert!(s.is_empty());
    assert_eq!(s.total_ignored(), 2);
    assert_eq!(s.latency().unwrap().count(), 0);
}

#[test]
fn record_at_places_calls_by_the_time_given() {
    let (clock, w) = window(4, 1000, None);
    clock.advance(Duration::from_secs(100));
    let now = clock.now();
    w.record_at(Failure, now);
    // Two seconds ago: still in the window of four seconds.
    w.record_at(Failure, now.saturating_sub(Duration::from_secs(2)));
    // Ten seconds ago: only in the totals.
    w.record_at(Failure, now.saturating_sub(Duration::from_secs(10)));
    let s = w.snapshot();
    assert_eq!((s.calls(), s.total_calls()), (2, 3));
    // The older of the two leaves first.
    clock.advance(Duration::from_secs(2));
    assert_eq!(w.snapshot().calls(), 1);
    // A time ahead of the clock moves the window.
    w.record_at(Success, clock.now() + Duration::from_secs(30));
    let s = w.snapshot();
    assert_eq!(counts(&s), (1, 0, 0));
    assert_eq!(s.total_failures(), 3);
}

#[test]
fn reset_empties_but_keeps_totals() {
    let (clock, w) = window(3, 100, Some(1));
    w.record_with_duration(Failure, Duration::from_millis(5));
    clock.advance(Duration::from_millis(100));
    w.record_with_duration(Success, Duration::from_millis(5));
    w.reset();
    let s = w.snapshot();
    assert!(s.is_empty());
    assert_eq!(s.latency().unwrap().count(), 0);
    assert_eq!(
        (s.total_calls(), s.total_failures(), s.total_slow_calls()),
        (2, 1, 2)
    );
    w.record_with_duration(Success, Duration::from_millis(5));
    let s = w.snapshot();
    assert_eq!(counts(&s), (1, 0, 1));
    assert_eq!(s.latency().unwrap().count(), 1);
}

#[test]
fn a_bucket_idle_for_2_pow_24_epochs_does_not_come_back() {
    // With 1 µs buckets, 2^24 epochs are about 16.8 s; a bucket's tag has 24 bits.
    let clock = ManualClock::new();
    let config = TimeConfig::new(1, Duration::from_micros(1));
    let w = TimeWindow::new(config, clock.clone()).unwrap();
    w.record(Failure);
    clock.advance(Duration::from_micros(1 << 24));
    let s = w.snapshot();
    assert!(s.is_empty(), "{s:?}");
    assert_eq!(s.total_failures(), 1);
    w.record(Success);
    assert_eq!(counts(&w.snapshot()), (1, 0, 0));
}

#[test]
fn memory_is_fixed_and_reported() {
    let (_clock, small) = window(1, 1000, None);
    let (_clock, large) = window(100, 10, None);
    assert!(small.memory_bytes() < large.memory_bytes());
    assert!(large.memory_bytes() < 1 << 20);
    assert_eq!(large.span(), Duration::from_secs(1));
}

#[test]
fn construction_names_bad_fields() {
    let mut bad = TimeConfig::default();
    bad.buckets = 0;
    let e = TimeWindow::new(bad, ManualClock::new()).unwrap_err();
    assert_eq!(e.field(), "buckets");
    assert!(e.to_string().contains("from 1 to 1000"), "{e}");
}

#[test]
fn threads_lose_no_update() {
    let (clock, w) = window(10, 1000, Some(1));
    let w = Arc::new(w);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                for i in 0..20_000u64 {
                    if (i + t) % 5 == 0 {
                        w.record_with_duration(Failure, Duration::from_millis(2));
                    } else {
                        w.record(Success);
                    }
                    if i % 1000 == 0 {
                        let s = w.snapshot();
                        assert!(s.failures() <= s.calls());
                        assert!((0.0..=1.0).contains(&s.failure_rate()));
                    }
                }
            })
        })
        .collect();
    // Time moves while they record.
    for _ in 0..20 {
        clock.advance(Duration::from_millis(100));
        std::thread::yield_now();
    }
    for t in threads {
        t.join().unwrap();
    }
    let s = w.snapshot();
    assert_eq!((s.total_calls(), s.total_failures()), (80_000, 16_000));
    assert_eq!(s.total_slow_calls(), 16_000);
    // Everything happened within 2 s of a 10 s window.
    assert_eq!(counts(&s), (80_000, 16_000, 16_000));
    assert_eq!(s.latency().unwrap().count(), 16_000);
}

#[tokio::test(start_paused = true)]
async fn follows_tokio_paused_time() {
    let w = TimeWindow::new(TimeConfig::default(), TokioClock).unwrap();
    w.record(Failure);
    tokio::time::sleep(Duration::from_secs(9)).await;
    w.record(Success);
    assert_eq!(w.snapshot().calls(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = w.snapshot();
    assert_eq!((s.calls(), s.failures()), (1, 0));
    let _: Timestamp = TokioClock.recent();
}

#[test]
fn a_record_after_a_pause_too_long_for_tags_counts() {
    // 2^22 buckets and more: the clear after the pause must retag every counter.
    let clock = ManualClock::new();
    let config = TimeConfig::new(1, Duration::from_micros(1));
    let w = TimeWindow::new(config, clock.clone()).unwrap();
    clock.advance(Duration::from_micros(9_271_644));
    w.record(Failure);
    assert_eq!(counts(&w.snapshot()), (1, 1, 0));
}

/// A window of 5 × 1 s on a clock that reads `start_ms` when it is created.
fn window_created_at(start_ms: u64) -> (ManualClock, TimeWindow<ManualClock>) {
    let clock = ManualClock::starting_at(Timestamp::from_nanos(start_ms * 1_000_000));
    let config = TimeConfig::new(5, Duration::from_secs(1));
    (clock.clone(), TimeWindow::new(config, clock).unwrap())
}

#[test]
fn buckets_start_when_the_window_is_created_not_at_the_clocks_phase() {
    // Created 999 ms into a second of the clock: its first bucket is a whole second.
    let (clock, w) = window_created_at(999);
    w.record(Failure);
    clock.advance(Duration::from_millis(4_200));
    assert_eq!(counts(&w.snapshot()), (1, 1, 0));
    // It leaves once its bucket, the window's first whole second, has.
    clock.advance(Duration::from_millis(800));
    assert_eq!(counts(&w.snapshot()), (0, 0, 0));
}

#[test]
fn a_call_stays_in_the_window_for_at_least_its_span_less_one_bucket() {
    for start_ms in [0, 1, 250, 999, 1_000, 7_777] {
        for at_ms in [0, 1, 500, 999, 1_000, 2_345] {
            let (clock, w) = window_created_at(start_ms);
            clock.advance(Duration::from_millis(at_ms));
            w.record(Success);
            // 4 s later (the span, 5 s, less one bucket) it is still counted.
            clock.advance(Duration::from_millis(4_000));
            assert_eq!(
                w.snapshot().calls(),
                1,
                "created at {start_ms} ms, call at +{at_ms} ms"
            );
            // And gone after the whole span.
            clock.advance(Duration::from_millis(1_000));
            assert_eq!(
                w.snapshot().calls(),
                0,
                "created at {start_ms} ms, call at +{at_ms} ms"
            );
        }
    }
}
