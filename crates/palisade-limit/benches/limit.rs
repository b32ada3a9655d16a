//! The hot paths of the limits: `cargo bench -p palisade-limit --bench limit`.
//!
//! The side-by-side rows against other crates live in the benchmark crate; these
//! measure this crate's own paths (and tokio's semaphore, which a bulkhead could
//! have been built on) while developing.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_clock::MonotonicClock;
use palisade_limit::rate::{KeyedRateLimiter, KeyedRateLimiterConfig};
use palisade_limit::throttle::{Throttle, ThrottleConfig};
use palisade_limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};

fn bulkhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("bulkhead");
    let b = Bulkhead::with_clock(BulkheadConfig::new(100), MonotonicClock).unwrap();
    group.bench_function("try_acquire+release", |bench| {
        bench.iter(|| drop(black_box(b.try_acquire().unwrap())))
    });
    group.bench_function("try_acquire_owned+release", |bench| {
        bench.iter(|| drop(black_box(b.try_acquire_owned().unwrap())))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let queued = Bulkhead::with_clock(
        BulkheadConfig::new(100).with_queue(10, Duration::from_secs(1)),
        MonotonicClock,
    )
    .unwrap();
    group.bench_function("acquire().await+release", |bench| {
        bench.iter(|| rt.block_on(async { drop(black_box(queued.acquire().await.unwrap())) }))
    });
    let full = Bulkhead::with_clock(BulkheadConfig::new(1), MonotonicClock).unwrap();
    let _held = full.try_acquire().unwrap();
    group.bench_function("try_acquire rejected", |bench| {
        bench.iter(|| black_box(full.try_acquire().is_err()))
    });
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(100));
    group.bench_function("tokio Semaphore try_acquire+release", |bench| {
        bench.iter(|| drop(black_box(semaphore.try_acquire().unwrap())))
    });
    group.bench_function("tokio Semaphore try_acquire_owned+release", |bench| {
        bench.iter(|| drop(black_box(semaphore.clone().try_acquire_owned().unwrap())))
    });
    group.finish();
}

fn rate(c: &mut Criterion) {
    // The monotonic clock: the tokio clock's cheap reading is exact (and slow) under
    // the `test-util` feature that this crate's tests enable.
    let mut group = c.benchmark_group("rate_limiter");
    // A wide burst at a rate so high that every check passes: reads `recent()`.
    let coarse =
        RateLimiter::with_clock(RateLimiterConfig::per_second(1_000_000_000), MonotonicClock)
            .unwrap();
    assert!(!coarse.snapshot().precise_clock);
    group.bench_function("check (recent(), allowed)", |bench| {
        bench.iter(|| black_box(coarse.check()))
    });
    // A burst of one at a fast rate: reads the precise `now()`.
    let precise = RateLimiter::with_clock(
        RateLimiterConfig::per_second(1_000_000_000).with_burst(1),
        MonotonicClock,
    )
    .unwrap();
    assert!(precise.snapshot().precise_clock);
    group.bench_function("check (now())", |bench| {
        bench.iter(|| black_box(precise.check()))
    });
    // 50 a second: after the burst, most checks are refused.
    let refusing =
        RateLimiter::with_clock(RateLimiterConfig::per_second(50), MonotonicClock).unwrap();
    group.bench_function("check (recent(), mostly refused)", |bench| {
        bench.iter(|| black_box(refusing.check()))
    });
    let keyed: KeyedRateLimiter<u64, _> = KeyedRateLimiter::with_clock(
        KeyedRateLimiterConfig::new(RateLimiterConfig::per_second(1_000_000_000), 10_000),
        MonotonicClock,
    )
    .unwrap();
    for key in 0..1024 {
        let _ = keyed.check(&key);
    }
    let mut key = 0u64;
    group.bench_function("keyed check (1024 keys in rotation)", |bench| {
        bench.iter(|| {
            key = (key + 1) % 1024;
            black_box(keyed.check(&key))
        })
    });
    group.finish();
}

fn throttle(c: &mut Criterion) {
    let mut group = c.benchmark_group("throttle");
    let throttle = Throttle::with_clock(ThrottleConfig::default(), MonotonicClock).unwrap();
    group.bench_function("check + record_accepted (healthy)", |bench| {
        bench.iter(|| {
            black_box(throttle.check()).unwrap();
            throttle.record_accepted();
        })
    });
    group.finish();
}

criterion_group!(benches, bulkhead, rate, throttle);
criterion_main!(benches);
