//! What one reading of each clock costs: `cargo bench -p palisade-clock --bench now`.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_clock::{Clock, ManualClock, MonotonicClock, TokioClock};

fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock");
    group.bench_function("std::time::Instant::now", |b| {
        #[allow(clippy::disallowed_methods)]
        b.iter(|| black_box(std::time::Instant::now()))
    });
    group.bench_function("TokioClock::now", |b| {
        b.iter(|| black_box(TokioClock.now()))
    });
    group.bench_function("TokioClock::recent", |b| {
        b.iter(|| black_box(TokioClock.recent()))
    });
    group.bench_function("MonotonicClock::now", |b| {
        b.iter(|| black_box(MonotonicClock.now()))
    });
    group.bench_function("MonotonicClock::recent", |b| {
        b.iter(|| black_box(MonotonicClock.recent()))
    });
    let manual = ManualClock::new();
    group.bench_function("ManualClock::now", |b| b.iter(|| black_box(manual.now())));
    group.finish();
}

criterion_group!(benches, clocks);
criterion_main!(benches);
