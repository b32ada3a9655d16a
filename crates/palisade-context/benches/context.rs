//! Benchmarks of the context next to tokio-util's `CancellationToken`, in one run so
//! that the ratios compare like with like.
//!
//! `cargo bench -p palisade-context --bench context`
// criterion_group! generates undocumented items.
#![allow(missing_docs)]
#![allow(clippy::disallowed_methods)] // a benchmark is the root: it makes its own contexts

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use palisade_context::Context;
use tokio_util::sync::CancellationToken;

fn is_cancelled(c: &mut Criterion) {
    let mut group = c.benchmark_group("is_cancelled");
    let (root, _rg) = Context::background().with_cancel();
    group.bench_function("palisade", |b| b.iter(|| black_box(&root).is_cancelled()));
    // A lazy child also loads its parent's state.
    let (child, _cg) = root.with_cancel();
    group.bench_function("palisade_lazy_child", |b| {
        b.iter(|| black_box(&child).is_cancelled())
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let (deadline_ctx, _dg) = Context::background().with_timeout(Duration::from_secs(3600));
    group.bench_function("palisade_with_deadline", |b| {
        b.iter(|| black_box(&deadline_ctx).is_cancelled())
    });

    let token = CancellationToken::new();
    group.bench_function("tokio_util", |b| {
        b.iter(|| black_box(&token).is_cancelled())
    });
    group.finish();
}

fn create_drop_child(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_drop_child");
    let (parent, _pg) = Context::background().with_cancel();
    group.bench_function("palisade", |b| {
        b.iter(|| {
            let (child, _guard) = black_box(&parent).with_cancel();
            child.is_cancelled()
        })
    });
    let token = CancellationToken::new();
    group.bench_function("tokio_util", |b| {
        b.iter(|| black_box(&token).child_token().is_cancelled())
    });
    group.finish();
}

fn cancel_100_children(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel_parent_with_100_children");
    group.bench_function("palisade", |b| {
        b.iter_batched(
            || {
                let (parent, guard) = Context::background().with_cancel();
                let children: Vec<_> = (0..100).map(|_| parent.with_cancel()).collect();
                (parent, guard, children)
            },
            |(parent, guard, children)| {
                guard.cancel();
                (parent, guard, children)
            },
            BatchSize::SmallInput,
        )
    });
    // Children that something waits on are registered: the cancellation reaches
    // each and wakes its waiter.
    group.bench_function("palisade_waited_on", |b| {
        let waker = std::task::Waker::noop();
        b.iter_batched(
            || {
                let (parent, guard) = Context::background().with_cancel();
                let children: Vec<_> = (0..100).map(|_| parent.with_cancel()).collect();
                let mut cx = std::task::Context::from_waker(waker);
                for (child, _) in &children {
                    let mut wait = Box::pin(child.cancelled());
                    assert!(wait.as_mut().poll(&mut cx).is_pending());
                    // Keep the registration of the child, not of the waiter.
                }
                (parent, guard, children)
            },
            |(parent, guard, children)| {
                guard.cancel();
                (parent, guard, children)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("tokio_util", |b| {
        b.iter_batched(
            || {
                let parent = CancellationToken::new();
                let children: Vec<_> = (0..100).map(|_| parent.child_token()).collect();
                (parent, children)
            },
            |(parent, children)| {
                parent.cancel();
                (parent, children)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    is_cancelled,
    create_drop_child,
    cancel_100_children
);
criterion_main!(benches);
