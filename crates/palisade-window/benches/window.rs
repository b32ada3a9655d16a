//! What recording and snapshots cost, next to the floors they are judged against:
//! `cargo bench -p palisade-window --bench window`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_clock::{Clock, ManualClock, MonotonicClock};
use palisade_window::{CountConfig, CountWindow, OutcomeKind, TimeConfig, TimeWindow, Window};

fn floors(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    let counter = AtomicU64::new(0);
    group.bench_function("relaxed fetch_add", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::Relaxed))
    });
    group.bench_function("MonotonicClock::recent", |b| {
        b.iter(|| black_box(MonotonicClock.recent()))
    });
    group.finish();
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let time = TimeWindow::new(TimeConfig::default(), MonotonicClock).unwrap();
    let now = MonotonicClock.recent();
    group.bench_function("TimeWindow::record_at", |b| {
        b.iter(|| time.record_at(black_box(OutcomeKind::Success), black_box(now)))
    });
    group.bench_function("TimeWindow::record", |b| {
        b.iter(|| time.record(black_box(OutcomeKind::Success)))
    });
    group.bench_function("TimeWindow::record_with_duration_at", |b| {
        b.iter(|| {
            time.record_with_duration_at(
                black_box(OutcomeKind::Success),
                black_box(Duration::from_millis(3)),
                black_box(now),
            )
        })
    });
    let manual = TimeWindow::new(TimeConfig::default(), ManualClock::new()).unwrap();
    group.bench_function("TimeWindow<ManualClock>::record", |b| {
        b.iter(|| manual.record(black_box(OutcomeKind::Success)))
    });
    let count = CountWindow::new(CountConfig::default()).unwrap();
    group.bench_function("CountWindow::record", |b| {
        b.iter(|| count.record(black_box(OutcomeKind::Success)))
    });
    let mut i = 0u64;
    group.bench_function("CountWindow::record 10% failures", |b| {
        b.iter(|| {
            i += 1;
            let kind = if i % 10 == 0 {
                OutcomeKind::Failure
            } else {
                OutcomeKind::Success
            };
            count.record(black_box(kind))
        })
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot");
    let clock = ManualClock::new();
    let config = TimeConfig::new(100, Duration::from_millis(10))
        .with_slow_call_threshold(Some(Duration::from_millis(5)));
    let time = TimeWindow::new(config, clock.clone()).unwrap();
    for i in 0..1000u64 {
        time.record_with_duration(
            if i % 7 == 0 {
                OutcomeKind::Failure
            } else {
                OutcomeKind::Success
            },
            Duration::from_micros(i * 37),
        );
        clock.advance(Duration::from_millis(1));
    }
    group.bench_function("TimeWindow 100 buckets", |b| {
        b.iter(|| black_box(time.snapshot()))
    });
    let count = CountWindow::new(CountConfig::new(10_000)).unwrap();
    group.bench_function("CountWindow 10000", |b| {
        b.iter(|| black_box(count.snapshot()))
    });
    group.finish();
}

/// Two threads, each doing `n` operations on shared state; criterion measures the
/// time of `iters` operations per thread, so throughput relative to one thread is
/// the single-thread time divided by this time.
fn two_threads<S: Send + Sync + 'static>(
    shared: Arc<S>,
    op: fn(&S),
) -> impl FnMut(u64) -> Duration {
    move |iters| {
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let other = {
            let shared = shared.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..iters {
                    op(&shared);
                }
            })
        };
        barrier.wait();
        #[allow(clippy::disallowed_methods)]
        let start = std::time::Instant::now();
        for _ in 0..iters {
            op(&shared);
        }
        other.join().unwrap();
        start.elapsed()
    }
}

fn one_thread<S>(shared: &S, op: fn(&S), iters: u64) -> Duration {
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    for _ in 0..iters {
        op(shared);
    }
    start.elapsed()
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("two threads");
    let counter = Arc::new(AtomicU64::new(0));
    fn add(c: &AtomicU64) {
        black_box(c).fetch_add(1, Ordering::Relaxed);
    }
    group.bench_function("shared fetch_add, 1 thread", |b| {
        b.iter_custom(|iters| one_thread(&*counter, add, iters))
    });
    group.bench_function("shared fetch_add, 2 threads", |b| {
        b.iter_custom(two_threads(counter.clone(), add))
    });
    let time = Arc::new(TimeWindow::new(TimeConfig::default(), MonotonicClock).unwrap());
    fn rec(w: &TimeWindow<MonotonicClock>) {
        w.record(black_box(OutcomeKind::Success));
    }
    fn rec_at(w: &TimeWindow<MonotonicClock>) {
        w.record_at(black_box(OutcomeKind::Success), MonotonicClock.recent());
    }
    group.bench_function("TimeWindow::record, 1 thread", |b| {
        b.iter_custom(|iters| one_thread(&*time, rec, iters))
    });
    group.bench_function("TimeWindow::record, 2 threads", |b| {
        b.iter_custom(two_threads(time.clone(), rec))
    });
    group.bench_function("TimeWindow::record_at, 1 thread", |b| {
        b.iter_custom(|iters| one_thread(&*time, rec_at, iters))
    });
    group.bench_function("TimeWindow::record_at, 2 threads", |b| {
        b.iter_custom(two_threads(time.clone(), rec_at))
    });
    let count = Arc::new(CountWindow::new(CountConfig::default()).unwrap());
    fn rec_count(w: &CountWindow) {
        w.record(black_box(OutcomeKind::Success));
    }
    group.bench_function("CountWindow::record, 1 thread", |b| {
        b.iter_custom(|iters| one_thread(&*count, rec_count, iters))
    });
    group.bench_function("CountWindow::record, 2 threads", |b| {
        b.iter_custom(two_threads(count.clone(), rec_count))
    });
    group.finish();
}

criterion_group!(benches, floors, record, snapshot, scaling);
criterion_main!(benches);
