//! loom models of the cancellation protocol. Each has a twin with a deliberate fault
//! that the model must catch, which proves that the model reaches the interleaving
//! the correct code guards against.
//!
//! Run with `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p
//! palisade-context --test loom`.
#![cfg(loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Wake, Waker};

use loom::thread;
use palisade_context::Context;
use palisade_context::loom_support::{Fault, children_len, inject, registered_child};

/// A child registering while its parent is cancelled (the parent's compare-and-swap
/// fast path, since nothing was registered on it before) is either drained by the
/// cancellation or ends at once: never missed.
fn cancel_vs_registration(fault: Option<Fault>) {
    loom::model(move || {
        inject(fault);
        let (parent, guard) = Context::background().with_cancel();
        let spawner = parent.clone();
        let registering = thread::spawn(move || {
            let (child, child_guard) = registered_child(&spawner);
            child_guard.detach();
            child
        });
        guard.cancel();
        let child = registering.join().unwrap();
        assert!(
            child.is_cancelled(),
            "a child of a cancelled parent is live"
        );
        assert!(child.cause().unwrap().is_canceled());
    });
}

#[test]
fn cancel_races_child_registration() {
    cancel_vs_registration(None);
}

#[test]
#[should_panic(expected = "a child of a cancelled parent is live")]
fn broken_registration_misses_the_cancel() {
    cancel_vs_registration(Some(Fault::RegisterWithoutRecheck));
}

/// A child dropped while its parent is cancelled: the cancellation skips the
/// half-dropped child, still reaches the live sibling, and the registry ends empty.
fn cancel_vs_drop(fault: Option<Fault>) {
    loom::model(move || {
        inject(fault);
        let (parent, guard) = Context::background().with_cancel();
        let (child, child_guard) = registered_child(&parent);
        child_guard.detach();
        let (sibling, sibling_guard) = registered_child(&parent);
        sibling_guard.detach();
        let dropping = thread::spawn(move || drop(child));
        guard.cancel();
        dropping.join().unwrap();
        assert!(sibling.is_cancelled());
        assert_eq!(children_len(&parent), 0);
    });
}

#[test]
fn cancel_races_child_drop() {
    cancel_vs_drop(None);
}

#[test]
#[should_panic(expected = "a registered child was already dropped")]
fn broken_cancel_trusts_dropped_children() {
    cancel_vs_drop(Some(Fault::CancelAssumesChildrenAlive));
}

/// Unregistration on drop keeps the parent's registry at its live children, also
/// when children register and drop concurrently.
#[test]
fn concurrent_registration_and_drop_leave_no_trace() {
    loom::model(|| {
        let (parent, _guard) = Context::background().with_cancel();
        let other = parent.clone();
        let churn = thread::spawn(move || {
            let (child, child_guard) = registered_child(&other);
            drop(child_guard);
            drop(child);
        });
        let (kept, kept_guard) = registered_child(&parent);
        churn.join().unwrap();
        assert_eq!(children_len(&parent), 1);
        drop((kept, kept_guard));
        assert_eq!(children_len(&parent), 0);
    });
}

/// A waiter racing the cancellation is always woken: no lost wake-up. The child is
/// lazy, so the waiter also registers it with its parent on the way.
fn cancel_vs_waiter(fault: Option<Fault>) {
    loom::model(move || {
        inject(fault);
        let (ctx, guard) = Context::background().with_cancel();
        let (child, child_guard) = ctx.with_cancel();
        child_guard.detach();
        let woken = Arc::new(AtomicBool::new(false));
        let waker = Waker::from(Arc::new(Flag(woken.clone())));
        let waiting = thread::spawn(move || {
            let mut wait: Pin<Box<dyn Future<Output = ()> + Send>> =
                Box::pin(async move { child.cancelled().await });
            let ready = wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_ready();
            // Kept registered until the cancellation is over.
            (ready, wait)
        });
        guard.cancel();
        let (ready, wait) = waiting.join().unwrap();
        assert!(
            ready || woken.load(Ordering::SeqCst),
            "a registered waiter was never woken"
        );
        drop(wait);
    });
}

/// A waker that raises a flag. The flag is a plain atomic: it is read only after
/// `join`, and loom runs a model's threads on one OS thread.
struct Flag(Arc<AtomicBool>);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn cancel_races_waiter() {
    cancel_vs_waiter(None);
}

#[test]
#[should_panic(expected = "a registered waiter was never woken")]
fn broken_waiter_loses_the_wakeup() {
    cancel_vs_waiter(Some(Fault::WaitWithoutRecheck));
}

/// A lazy child sees its parent's end by looking, whenever it happens.
#[test]
fn lazy_children_see_the_end() {
    loom::model(|| {
        let (parent, guard) = Context::background().with_cancel();
        let (child, child_guard) = parent.with_cancel();
        child_guard.detach();
        let cancelling = thread::spawn(move || guard.cancel());
        let seen_early = child.is_cancelled();
        cancelling.join().unwrap();
        assert!(child.is_cancelled());
        assert!(child.cause().unwrap().is_canceled());
        let _ = seen_early;
        assert_eq!(children_len(&parent), 0);
    });
}

/// A waiter that comes and goes (which clears the node's registration flag, so that
/// ending it is one compare-and-swap again) never makes a later waiter miss the end.
#[test]
fn waiters_coming_and_going_race_the_cancel() {
    loom::model(|| {
        let (ctx, guard) = Context::background().with_cancel();
        let other = ctx.clone();
        let waiting = thread::spawn(move || {
            {
                let mut first = Box::pin(other.cancelled());
                let _ = first
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(Waker::noop()));
            }
            loom::future::block_on(other.cancelled());
        });
        guard.cancel();
        waiting.join().unwrap();
        assert!(ctx.is_cancelled());
    });
}

/// Two waiters on one lazy child register it with its parent concurrently: it is
/// registered once (the key, written under the parent's lock, says whether it is),
/// and the parent's end wakes both.
fn racing_waiters_on_a_lazy_child(fault: Option<Fault>) {
    loom::model(move || {
        inject(fault);
        let (parent, guard) = Context::background().with_cancel();
        let (child, child_guard) = parent.with_cancel();
        child_guard.detach();
        let other = child.clone();
        let waiting = thread::spawn(move || {
            inject(fault);
            let mut wait = Box::pin(async move { other.cancelled().await });
            let ready = wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(Waker::noop()))
                .is_ready();
            assert!(!ready);
            wait
        });
        let mut mine = Box::pin(child.cancelled());
        let cx = &mut std::task::Context::from_waker(Waker::noop());
        assert!(mine.as_mut().poll(cx).is_pending());
        let mut theirs = waiting.join().unwrap();
        assert_eq!(children_len(&parent), 1, "the child registered twice");
        guard.cancel();
        assert!(mine.as_mut().poll(cx).is_ready());
        assert!(theirs.as_mut().poll(cx).is_ready());
    });
}

#[test]
fn racing_waiters_register_a_lazy_child_once() {
    racing_waiters_on_a_lazy_child(None);
}

#[test]
#[should_panic(expected = "the child registered twice")]
fn broken_registration_ignores_the_key() {
    racing_waiters_on_a_lazy_child(Some(Fault::RegisterChildTwice));
}

/// A lazy child links up with its parent while, on another thread, a waiter on a
/// grandchild registers the child (and the grandchild on it) and the parent is
/// cancelled. Whichever way it goes, the grandchild ends and its waiter is woken:
/// the child's end is never decided alone by the thread that found the parent
/// ended after someone else had registered the child.
fn link_up_vs_registered_grandchild(fault: Option<Fault>) {
    loom::model(move || {
        inject(fault);
        let (parent, guard) = Context::background().with_cancel();
        let (child, child_guard) = parent.with_cancel();
        child_guard.detach();
        let (grandchild, grandchild_guard) = child.with_cancel();
        grandchild_guard.detach();
        let cx = &mut std::task::Context::from_waker(Waker::noop());
        // The grandchild's waiter registers the chain: the child with the parent,
        // the grandchild with the child.
        let mut grand_wait = Box::pin(grandchild.cancelled());
        let linking = thread::spawn(move || {
            inject(fault);
            let mut wait = Box::pin(child.cancelled());
            let _ = wait
                .as_mut()
                .poll(&mut std::task::Context::from_waker(Waker::noop()));
        });
        let _ = grand_wait.as_mut().poll(cx);
        guard.cancel();
        linking.join().unwrap();
        assert!(grandchild.is_cancelled(), "the grandchild missed the end");
        assert!(
            grand_wait.as_mut().poll(cx).is_ready(),
            "the grandchild's waiter was not woken"
        );
    });
}

#[test]
fn link_up_races_a_registered_grandchild() {
    link_up_vs_registered_grandchild(None);
}

#[test]
#[should_panic]
fn broken_link_up_ends_a_registered_child_alone() {
    link_up_vs_registered_grandchild(Some(Fault::EndRegisteredNodeAlone));
}
