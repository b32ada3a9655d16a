//! The one place that names the synchronisation primitives, so that `--cfg loom`
//! can swap in loom's models of them.
//!
//! `Arc` and `Weak` stay std's under loom as well: loom's `Arc` has no `Weak`, and
//! the protocol checked by the loom models is the one built on the mutex and the
//! atomic state, not the reference counting.

pub(crate) use std::sync::{Arc, Weak};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};

/// A mutex whose `lock` cannot fail: parking_lot's, or loom's model of one.
#[cfg(not(loom))]
pub(crate) type Mutex<T> = parking_lot::Mutex<T>;
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[allow(dead_code)]
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.0
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Deliberate faults that the loom models switch on to prove that they reach the
/// interleavings the correct code guards against. Outside loom every check is a
/// constant `false`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(dead_code, unreachable_pub)]
pub enum Fault {
    /// No fault.
    None,
    /// Registering a child trusts a read of the parent's state made before taking
    /// the parent's lock.
    RegisterWithoutRecheck,
    /// Cancelling assumes every registered child is alive, forgetting a child whose
    /// last handle is gone and whose `Drop` has not unregistered it yet.
    CancelAssumesChildrenAlive,
    /// A waiter registers its waker without checking the state again under the lock.
    WaitWithoutRecheck,
    /// A node that finds its parent ended while it links up ends itself alone, even
    /// when another thread registered it (and things on it) meanwhile.
    EndRegisteredNodeAlone,
    /// Registering a child with its parent ignores its key, so a child that another
    /// thread registered meanwhile is registered again.
    RegisterChildTwice,
}

#[cfg(loom)]
std::thread_local! {
    static FAULT: std::cell::Cell<Option<Fault>> = const { std::cell::Cell::new(None) };
}

/// Switches a fault on for the loom model run on this thread (loom runs a model's
/// threads as coroutines on the calling thread).
#[cfg(loom)]
pub(crate) fn inject(fault: Option<Fault>) {
    FAULT.with(|f| f.set(fault));
}

#[cfg(loom)]
#[inline]
pub(crate) fn fault(fault: Fault) -> bool {
    fault != Fault::None && FAULT.with(|f| f.get() == Some(fault))
}

#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn fault(_: Fault) -> bool {
    false
}
