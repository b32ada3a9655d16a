//! What a schedule costs: `cargo bench -p palisade-backoff --bench delays`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_backoff::{Backoff, Jitter};

fn delays(c: &mut Criterion) {
    let mut group = c.benchmark_group("backoff");
    let jittered = Backoff::exponential(Duration::from_millis(100))
        .max_delay(Duration::from_secs(60))
        .jitter(Jitter::Full)
        .max_attempts(11)
        .build()
        .unwrap();
    let plain = jittered.to_builder().jitter(Jitter::None).build().unwrap();
    group.bench_function("exponential_full_jitter_10_delays", |b| {
        b.iter(|| {
            let mut sum = Duration::ZERO;
            for d in black_box(&jittered).iter() {
                sum += d;
            }
            black_box(sum)
        })
    });
    group.bench_function("exponential_full_jitter_10_delays_seeded", |b| {
        b.iter(|| {
            let mut sum = Duration::ZERO;
            for d in black_box(&jittered).iter_seeded(7) {
                sum += d;
            }
            black_box(sum)
        })
    });
    group.bench_function("exponential_no_jitter_10_delays", |b| {
        b.iter(|| {
            let mut sum = Duration::ZERO;
            for d in black_box(&plain).iter() {
                sum += d;
            }
            black_box(sum)
        })
    });
    let decorrelated = Backoff::decorrelated(Duration::from_millis(100))
        .max_delay(Duration::from_secs(60))
        .max_attempts(11)
        .build()
        .unwrap();
    group.bench_function("decorrelated_10_delays", |b| {
        b.iter(|| {
            let mut sum = Duration::ZERO;
            for d in black_box(&decorrelated).iter() {
                sum += d;
            }
            black_box(sum)
        })
    });
    group.bench_function("create_iterator", |b| {
        b.iter(|| black_box(black_box(&jittered).iter()))
    });
    group.finish();
}

criterion_group!(benches, delays);
criterion_main!(benches);
