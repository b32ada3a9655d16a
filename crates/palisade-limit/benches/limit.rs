//! The hot paths of the limits: `cargo bench -p palisade-limit --bench limit`.
//!
//! The side-by-side rows against other crates live in the benchmark crate; these
//! measure this crate's own paths (and tokio's semaphore, which a bulkhead could
//! have been built on) while developing.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_clock::{ManualClock, MonotonicClock};
use palisade_limit::rate::{KeyedRateLimiter, KeyedRateLimiterConfig};
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
    let mut group = c.benchmark_group("rate_limiter");
    // Allowing: a rate so high that every check passes.
    let fast = RateLimiter::new(RateLimiterConfig::per_second(1_000_000_000)).unwrap();
    group.bench_function("check (precise clock, allowed)", |bench| {
        bench.iter(|| black_box(fast.check()))
    });
    // A 50/s limit reads the coarse clock; after the burst most checks are refused.
    let slow = RateLimiter::new(RateLimiterConfig::per_second(50)).unwrap();
    group.bench_function("check (coarse clock, mostly refused)", |bench| {
        bench.iter(|| black_box(slow.check()))
    });
    let manual = RateLimiter::with_clock(
        RateLimiterConfig::per_second(1_000_000_000),
        ManualClock::new(),
    )
    .unwrap();
    group.bench_function("check (manual clock)", |bench| {
        bench.iter(|| black_box(manual.check()))
    });
    let keyed: KeyedRateLimiter<u64> = KeyedRateLimiter::new(KeyedRateLimiterConfig::new(
        RateLimiterConfig::per_second(1_000_000_000),
        10_000,
    ))
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

criterion_group!(benches, bulkhead, rate);
criterion_main!(benches);
