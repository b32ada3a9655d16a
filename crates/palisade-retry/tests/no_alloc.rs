//! A call that succeeds on its first attempt allocates nothing, with or without a
//! budget; a call that stops on a failure allocates its error only.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use palisade_backoff::{Backoff, Jitter};
use palisade_classify::{Classify, Outcome};
use palisade_clock::ManualClock;
use palisade_context::Context;
use palisade_retry::{RetryBudget, RetryPolicy, RetryPolicyBuilder, StopReason};

/// Counts the allocations of the current thread (other test threads do not
/// disturb the count).
struct Counting;

std::thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is
// a thread-local `Cell` that itself never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn ready<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut TaskContext::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("never waits"),
    }
}

/// Every error is permanent: the first failure ends the call.
struct Permanent;

impl<T, E> Classify<T, E> for Permanent {
    fn classify(&self, result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Permanent,
        }
    }
}

fn policies(clock: &ManualClock) -> Vec<RetryPolicy<ManualClock>> {
    let backoff = |elapsed: bool| {
        let b = Backoff::exponential(Duration::from_millis(10))
            .jitter(Jitter::Full)
            .max_attempts(4);
        if elapsed {
            b.max_elapsed(Duration::from_secs(1))
        } else {
            b
        }
        .build()
        .unwrap()
    };
    let budget = || {
        RetryBudget::builder()
            .build_with_clock(clock.clone())
            .unwrap()
    };
    vec![
        RetryPolicyBuilder::with_clock(clock.clone())
            .backoff(backoff(false))
            .build()
            .unwrap(),
        RetryPolicyBuilder::with_clock(clock.clone())
            .backoff(backoff(false))
            .budget(budget())
            .build()
            .unwrap(),
        RetryPolicyBuilder::with_clock(clock.clone())
            .backoff(backoff(true))
            .budget(budget())
            .build()
            .unwrap(),
    ]
}

#[test]
fn a_first_attempt_success_does_not_allocate() {
    let clock = ManualClock::new();
    let ctx = Context::background();
    for policy in policies(&clock) {
        // Warm up (thread-local stripe numbers, lazily built statics).
        ready(policy.retry(&ctx, |_| async { Ok::<_, ()>(1) })).unwrap();

        let before = allocations();
        for i in 0..1000u32 {
            let value =
                ready(policy.retry(
                    &ctx,
                    |attempt| async move { Ok::<_, ()>(attempt.number() + i) },
                ))
                .unwrap();
            assert_eq!(value, 1 + i);
        }
        assert_eq!(allocations() - before, 0, "{policy:?}");
        if let Some(budget) = policy.snapshot().budget {
            assert_eq!(budget.deposits(), 1001);
        }
    }
}

#[test]
fn a_failure_that_is_not_retried_allocates_its_error_only() {
    let clock = ManualClock::new();
    let ctx = Context::background();
    for policy in policies(&clock) {
        let _ = ready(policy.retry_with(&ctx, &Permanent, |_| async { Err::<(), _>(0u8) }));

        let before = allocations();
        for _ in 0..100 {
            let err = ready(policy.retry_with(&ctx, &Permanent, |_| async { Err::<(), _>(7u8) }))
                .unwrap_err();
            assert_eq!(err.reason(), StopReason::NotRetryable);
            assert_eq!(err.last_error(), Some(&7));
        }
        assert_eq!(allocations() - before, 100, "{policy:?}");
    }
}
