//! A successful call through a pipeline allocates nothing.
//!
//! A counting global allocator counts the allocations made on this thread while a
//! flag is up; the pipeline runs on a current-thread runtime on the same thread.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "retry", feature = "breaker", feature = "limit"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade::breaker::{Breaker, BreakerConfig};
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::{Context, Pipeline};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every method forwards to the system allocator unchanged; counting only
// reads a thread-local flag and bumps an atomic, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed through unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during<F: FnOnce()>(f: F) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

async fn calls(pipeline: &Pipeline, ctx: &Context, n: u32) {
    for i in 0..n {
        let v = pipeline
            .execute(ctx, |_ctx| async move { Ok::<u32, std::io::Error>(i) })
            .await
            .unwrap();
        assert_eq!(v, i);
    }
}

/// Allocations made by 1000 successful calls through `pipeline`, after a warm-up:
/// the fewest of three rounds, so that a one-time lazy initialisation in the
/// process (the runtime's, the clock's) does not count, while anything allocated
/// per call shows as at least 1000 in every round. Only the calls are counted:
/// `block_on` itself may allocate.
fn allocations_per_1000_calls(pipeline: &Pipeline) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::background();
    rt.block_on(async {
        calls(pipeline, &ctx, 100).await;
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
            calls(pipeline, &ctx, 1000).await;
            COUNTING.with(|c| c.set(false));
            fewest = fewest.min(ALLOCATIONS.load(Ordering::Relaxed) - before);
        }
        fewest
    })
}

#[test]
fn a_successful_call_allocates_nothing() {
    let timeouts = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_millis(100))
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(allocations_per_1000_calls(&timeouts), 0);

    let everything = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(1))
        .retry(
            RetryPolicy::builder()
                .budget(RetryBudget::new())
                .build()
                .unwrap(),
        )
        .breaker(Breaker::new(BreakerConfig::default()).unwrap())
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1_000_000)).unwrap())
        .bulkhead(Bulkhead::new(BulkheadConfig::new(100)).unwrap())
        .attempt_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(allocations_per_1000_calls(&everything), 0);
}

#[test]
fn the_counter_sees_allocations() {
    // The twin that proves the allocator counts: a boxed value is one allocation.
    let n = allocations_during(|| {
        std::hint::black_box(Box::new(5u64));
    });
    assert_eq!(n, 1);
}
