//! The hot paths: `cargo bench -p palisade-breaker --bench breaker`.
//!
//! The breakers read `MonotonicClock`, whose `recent()` is the coarse clock as
//! `TokioClock`'s is in production (this crate's tests switch the tokio clock to
//! exact readings, which would distort the figures).
#![allow(missing_docs)]

use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_breaker::{Breaker, BreakerConfig, OpenDuration, WindowConfig};
use palisade_classify::Outcome;
use palisade_clock::MonotonicClock;

fn breaker(window: WindowConfig) -> Breaker<MonotonicClock> {
    let config = BreakerConfig::default()
        .window(window)
        .minimum_calls(10)
        .open(OpenDuration::fixed(Duration::from_secs(3600)));
    Breaker::builder(config)
        .clock(MonotonicClock)
        .build()
        .unwrap()
}

const COUNT: WindowConfig = WindowConfig::Count { size: 100 };
const TIME: WindowConfig = WindowConfig::Time {
    buckets: 10,
    bucket_width: Duration::from_secs(1),
};

/// Polls a future that completes without waiting.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("the benchmarked futures never wait"),
    }
}

fn closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed");
    for (name, window) in [("count", COUNT), ("time", TIME)] {
        let b = breaker(window);
        group.bench_function(format!("permit/{name}"), |bench| {
            bench.iter(|| b.try_acquire().unwrap().record(black_box(Outcome::Success)))
        });
        group.bench_function(format!("call_sync/{name}"), |bench| {
            bench.iter(|| b.call_sync(|| Ok::<_, ()>(black_box(1u64))))
        });
        group.bench_function(format!("call_async/{name}"), |bench| {
            bench.iter(|| ready(b.call(async { Ok::<_, ()>(black_box(1u64)) })))
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    let b = breaker(COUNT);
    b.force_open();
    b.reset();
    for _ in 0..100 {
        let _ = b.call_sync(|| Err::<(), _>(()));
    }
    assert!(b.try_acquire().is_err());
    group.bench_function("reject", |bench| {
        bench.iter(|| black_box(b.try_acquire().is_err()))
    });
    group.bench_function("reject_async", |bench| {
        bench.iter(|| ready(b.call(async { Ok::<_, ()>(black_box(1u64)) })).is_err())
    });
    group.finish();
}

/// Closed-state calls on `threads` threads sharing one breaker: the time per call
/// of each thread (equal to one thread's when the calls scale perfectly).
fn shared(c: &mut Criterion) {
    let mut group = c.benchmark_group("shared");
    for (name, window) in [("count", COUNT), ("time", TIME)] {
        let b = breaker(window);
        for threads in [1usize, 2] {
            group.bench_function(format!("{name}/{threads}_threads"), |bench| {
                bench.iter_custom(|iters| {
                    std::thread::scope(|s| {
                        let handles: Vec<_> = (0..threads)
                            .map(|_| {
                                let b = &b;
                                s.spawn(move || {
                                    #[allow(clippy::disallowed_methods)]
                                    let start = Instant::now();
                                    for _ in 0..iters {
                                        b.try_acquire().unwrap().record(Outcome::Success);
                                    }
                                    start.elapsed()
                                })
                            })
                            .collect();
                        handles
                            .into_iter()
                            .map(|h| h.join().unwrap())
                            .max()
                            .unwrap()
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, closed, open, shared);
criterion_main!(benches);
