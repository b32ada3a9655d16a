//! Memory stays flat: a long-lived parent that sees a million children come and go
//! (lazy ones, registered ones, ones waited on) ends up holding what it held before.
//! A child that comes and goes unwatched reuses the memory of the one before it.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::task::Waker;

use palisade_context::Context;

/// Counts the bytes live on the heap that the test's own thread allocated and
/// freed: the test harness's threads allocate at times of their own (a channel's
/// waiter when the main thread blocks), which would make the count flaky.
struct Counting;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    /// Bytes live, and allocations made, by this thread while counted (each test
    /// runs on a thread of its own, so the tests do not see each other's).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter
// is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            let _ = LIVE.try_with(|live| live.set(live.get() + layout.size() as isize));
            let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is the system's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            let _ = LIVE.try_with(|live| live.set(live.get() - layout.size() as isize));
        }
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_million_children_leave_no_trace() {
    COUNTED.with(|c| c.set(true));
    let (parent, _guard) = Context::background().with_value(7u32).with_cancel();
    let mut cx = std::task::Context::from_waker(Waker::noop());
    // Warm up, so that one-time allocations do not count.
    for _ in 0..1000 {
        let (child, guard) = parent.with_cancel();
        assert!(
            Box::pin(child.cancelled())
                .as_mut()
                .poll(&mut cx)
                .is_pending()
        );
        drop((guard, child));
    }
    let before = live();
    for i in 0..1_000_000u32 {
        let (child, guard) = parent.with_cancel();
        match i % 4 {
            // Lazy, cancelled by its guard.
            0 => drop((guard, child)),
            // Lazy, detached, dropped.
            1 => {
                guard.detach();
                drop(child);
            }
            // Registered by a waiter, then cancelled.
            2 => {
                assert!(
                    Box::pin(child.cancelled())
                        .as_mut()
                        .poll(&mut cx)
                        .is_pending()
                );
                drop((guard, child));
            }
            // Registered, detached, dropped without being cancelled.
            _ => {
                assert!(
                    Box::pin(child.cancelled())
                        .as_mut()
                        .poll(&mut cx)
                        .is_pending()
                );
                guard.detach();
                drop(child);
            }
        }
    }
    let after = live();
    assert_eq!(after, before, "the parent grew by {} bytes", after - before);
}

#[test]
fn a_short_lived_child_allocates_nothing() {
    COUNTED.with(|c| c.set(true));
    let (parent, _guard) = Context::background().with_value(7u32).with_cancel();
    // The first child allocates; the thread keeps its node for the next.
    drop(parent.with_cancel());
    let before = allocations();
    for i in 0..1000 {
        let (child, guard) = parent.with_cancel();
        assert!(!child.is_cancelled());
        assert_eq!(child.get::<u32>(), Some(&7));
        let clone = child.clone();
        if i % 2 == 0 {
            // The guard first (it cancels), then the contexts.
            drop(guard);
            assert!(clone.is_cancelled());
            drop((child, clone));
        } else {
            // The contexts first, then the guard (the last handle).
            drop((child, clone));
            drop(guard);
        }
    }
    let allocations = allocations() - before;
    assert_eq!(
        allocations, 0,
        "1000 children made {allocations} allocations"
    );
}
