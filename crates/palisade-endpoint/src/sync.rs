//! The one place that names atomics, locks and `Arc`: loom's under `--cfg loom`.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// A mutex with parking_lot's non-poisoning interface.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            self.inner.lock().unwrap()
        }
    }
}

/// Deliberate bugs for the loom models' broken twins, switched on per test thread
/// (loom runs a model's threads on the thread that calls `loom::model`).
#[cfg(loom)]
pub(crate) mod broken {
    use std::cell::Cell;

    std::thread_local! {
        static BUG: Cell<u8> = const { Cell::new(0) };
    }

    /// Which deliberate bug is switched on.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Bug {
        /// No bug.
        None = 0,
        /// A flight that ends removes whatever entry its key has, even one a later
        /// flight put there.
        RemoveAnyFlight = 1,
        /// A flight's driver that is dropped before the end does not hand the call
        /// on: the callers left wait for ever.
        KeepDriverRole = 2,
    }

    /// Switches `bug` on for the models run by this thread.
    pub fn set(bug: Bug) {
        BUG.with(|b| b.set(bug as u8));
    }

    pub(crate) fn is(bug: Bug) -> bool {
        BUG.with(|b| b.get() == bug as u8)
    }
}

/// Whether the loom broken twin of the flight-removal model is running.
#[inline(always)]
pub(crate) fn broken_remove_any() -> bool {
    #[cfg(loom)]
    {
        broken::is(broken::Bug::RemoveAnyFlight)
    }
    #[cfg(not(loom))]
    {
        false
    }
}

/// Whether the loom broken twin of the driver hand-over model is running.
#[inline(always)]
pub(crate) fn broken_keep_driver() -> bool {
    #[cfg(loom)]
    {
        broken::is(broken::Bug::KeepDriverRole)
    }
    #[cfg(not(loom))]
    {
        false
    }
}
