//! Memory stays flat: a long-lived parent that sees a million children come and go
//! (lazy ones, registered ones, ones waited on) ends up holding what it held before.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::Waker;

use palisade_context::Context;

/// Counts the bytes live on the heap that the test's own thread allocated and
/// freed: the test harness's threads allocate at times of their own (a channel's
/// waiter when the main thread blocks), which would make the count flaky.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter
// is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: the caller upholds `alloc`'s contract, which is the system's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
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
    let before = LIVE.load(Ordering::Relaxed);
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
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(after, before, "the parent grew by {} bytes", after - before);
}
