//! What a pipeline costs on a successful call, next to the bare call, and what the
//! attempt timeout costs on a ready future, next to `tokio::time::timeout`.
//!
//! `cargo bench -p palisade --bench pipeline`
// criterion_group! makes an undocumented function.
#![allow(missing_docs)]
// Benchmarks measure real time.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade::{Context, Pipeline};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

#[inline(never)]
async fn dependency(i: u64) -> Result<u64, std::io::Error> {
    Ok(black_box(i))
}

fn pipeline(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("pipeline");
    let ctx = Context::background();

    g.bench_function("bare call", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(dependency(i).await.unwrap());
                }
                start.elapsed()
            })
        })
    });

    let empty = Pipeline::builder("dep").build().unwrap();
    g.bench_function("execute, no layers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(empty.execute(&ctx, |_| dependency(i)).await.unwrap());
                }
                start.elapsed()
            })
        })
    });

    let timeouts = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_millis(100))
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    g.bench_function("execute, attempt + total timeout", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(timeouts.execute(&ctx, |_| dependency(i)).await.unwrap());
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn ready_timeout(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("timeout of a ready future");
    let limit = Duration::from_millis(100);
    g.bench_function("tokio::time::timeout", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(
                        tokio::time::timeout(limit, dependency(i))
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("palisade::context::timeout", |b| {
        let ctx = palisade::Context::background();
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(
                        palisade::context::timeout(&ctx, limit, dependency(i))
                            .await
                            .unwrap()
                            .unwrap(),
                    );
                }
                start.elapsed()
            })
        })
    });
    g.finish();
}

fn ablation(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("ablation");
    let ctx = Context::background();
    macro_rules! case {
        ($name:expr, $i:ident, $e:expr) => {
            g.bench_function($name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for $i in 0..iters {
                            black_box($e);
                        }
                        start.elapsed()
                    })
                })
            });
        };
    }
    let empty = Pipeline::builder("dep").build().unwrap();
    let retry = Pipeline::builder("dep")
        .retry(palisade::retry::RetryPolicy::builder().build().unwrap())
        .build()
        .unwrap();
    let breaker = Pipeline::builder("dep")
        .breaker(palisade::breaker::Breaker::new(Default::default()).unwrap())
        .build()
        .unwrap();
    let bulkhead = Pipeline::builder("dep")
        .bulkhead(palisade::limit::Bulkhead::new(palisade::limit::BulkheadConfig::new(64)).unwrap())
        .build()
        .unwrap();
    let policy = palisade::retry::RetryPolicy::builder().build().unwrap();
    case!("bare", i, dependency(i).await.unwrap());
    case!(
        "retry crate alone",
        i,
        policy.retry(&ctx, |_| dependency(i)).await.unwrap()
    );
    case!(
        "catch_panic",
        i,
        palisade::classify::catch_panic(dependency(i))
            .await
            .unwrap()
            .unwrap()
    );
    case!("ctx.run", i, ctx.run(dependency(i)).await.unwrap().unwrap());
    case!("span", i, {
        use tracing::Instrument;
        let span = tracing::debug_span!("x", a = tracing::field::Empty);
        dependency(i).instrument(span).await.unwrap()
    });
    case!("Span::current", i, {
        black_box(tracing::Span::current());
        i
    });
    case!(
        "execute empty",
        i,
        empty.execute(&ctx, |_| dependency(i)).await.unwrap()
    );
    case!(
        "execute retry",
        i,
        retry.execute(&ctx, |_| dependency(i)).await.unwrap()
    );
    case!(
        "execute breaker",
        i,
        breaker.execute(&ctx, |_| dependency(i)).await.unwrap()
    );
    case!(
        "execute bulkhead",
        i,
        bulkhead.execute(&ctx, |_| dependency(i)).await.unwrap()
    );
    g.finish();
}

criterion_group!(benches, ablation, pipeline, ready_timeout);
criterion_main!(benches);
