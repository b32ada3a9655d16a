//! The executor's and the budget's hot paths:
//! `cargo bench -p palisade-retry --bench retry`.
#![allow(clippy::disallowed_methods)] // a benchmark is the root: it makes its own contexts
#![allow(missing_docs)]

use std::future::{Future, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_context::Context;
use palisade_retry::{Hedging, RetryBudget, RetryPolicy};

/// Polls a future that completes without waiting, once, with a no-op waker.
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = TaskContext::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the benchmarked future was not ready"),
    }
}

fn executor(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("retry");
    let ctx = Context::background();
    group.bench_function("baseline_operation_only", |b| {
        b.iter(|| poll_once(ready(Ok::<u32, ()>(black_box(1)))))
    });
    let plain = RetryPolicy::default();
    group.bench_function("first_attempt_success", |b| {
        b.iter(|| poll_once(plain.retry(&ctx, |_| ready(Ok::<u32, ()>(black_box(1))))))
    });
    let budgeted = RetryPolicy::builder()
        .budget(RetryBudget::new())
        .build()
        .unwrap();
    group.bench_function("first_attempt_success_with_budget", |b| {
        b.iter(|| poll_once(budgeted.retry(&ctx, |_| ready(Ok::<u32, ()>(black_box(1))))))
    });
    let hedged = RetryPolicy::builder()
        .hedging(Hedging::fixed(Duration::from_millis(10)).build().unwrap())
        .build()
        .unwrap();
    group.bench_function("first_attempt_success_with_hedging", |b| {
        b.iter(|| poll_once(hedged.retry(&ctx, |_| ready(Ok::<u32, ()>(black_box(1))))))
    });
    let (deadline_ctx, _guard) = ctx.with_timeout(Duration::from_secs(3600));
    group.bench_function("first_attempt_success_with_deadline", |b| {
        b.iter(|| poll_once(plain.retry(&deadline_ctx, |_| ready(Ok::<u32, ()>(black_box(1))))))
    });
    group.finish();
}

fn budget(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_budget");
    let budget = RetryBudget::new();
    group.bench_function("deposit", |b| b.iter(|| black_box(&budget).deposit()));
    // A fresh, rich budget per million withdrawals, so every one is granted.
    let rich = || {
        RetryBudget::builder()
            .min_retries_per_sec(1_000_000)
            .window(Duration::from_secs(3600))
            .build()
            .unwrap()
    };
    group.bench_function("try_withdraw", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(1_000_000);
                let budget = rich();
                #[allow(clippy::disallowed_methods)]
                let start = std::time::Instant::now();
                for _ in 0..n {
                    assert!(black_box(&budget).try_withdraw());
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    group.bench_function("snapshot", |b| b.iter(|| black_box(budget.snapshot())));
    group.finish();
}

criterion_group!(benches, executor, budget);
criterion_main!(benches);
