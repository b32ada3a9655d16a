//! The healthy call and the rejection allocate nothing.
#![allow(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use palisade_breaker::{Breaker, BreakerConfig, OpenDuration, WindowConfig};
use palisade_classify::Outcome;
use palisade_clock::ManualClock;

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
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("never waits"),
    }
}

#[test]
fn healthy_calls_and_rejections_do_not_allocate() {
    for window in [WindowConfig::Count { size: 100 }, WindowConfig::default()] {
        let clock = ManualClock::new();
        let breaker = Breaker::builder(
            BreakerConfig::default()
                .window(window)
                .minimum_calls(10)
                .open(OpenDuration::fixed(Duration::from_secs(60))),
        )
        .clock(clock.clone())
        .build()
        .unwrap();
        // Warm up (first readings, lazily built statics).
        breaker.try_acquire().unwrap().record(Outcome::Success);

        let before = allocations();
        for _ in 0..1000 {
            breaker.try_acquire().unwrap().record(Outcome::Success);
            breaker.call_sync(|| Ok::<_, ()>(1)).unwrap();
            ready(breaker.call(async { Ok::<_, ()>(1) })).unwrap();
            clock.advance(Duration::from_millis(3));
        }
        assert_eq!(allocations() - before, 0, "closed-state calls allocated");

        while breaker.state() != palisade_breaker::State::Open {
            let _ = breaker.call_sync(|| Err::<(), _>(()));
        }
        let before = allocations();
        for _ in 0..1000 {
            assert!(breaker.try_acquire().is_err());
            assert!(ready(breaker.call(async { Ok::<_, ()>(1) })).is_err());
        }
        assert_eq!(allocations() - before, 0, "rejections allocated");
    }
}
