//! The one place that names atomics, locks and `Arc`: loom's under `--cfg loom`, the
//! standard library's and parking_lot's otherwise.

#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

pub(crate) use crossbeam_utils::CachePadded;

/// A mutex whose `lock` cannot fail: parking_lot's, or loom's under `--cfg loom`.
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

    /// The guard if the lock is free at once, else `None`; never waits.
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        #[cfg(not(loom))]
        {
            self.inner.try_lock()
        }
        #[cfg(loom)]
        {
            self.inner.try_lock().ok()
        }
    }
}

/// A reader-writer lock whose `read` and `write` cannot fail: parking_lot's, or
/// loom's under `--cfg loom`.
#[derive(Debug, Default)]
pub(crate) struct RwLock<T> {
    #[cfg(not(loom))]
    inner: parking_lot::RwLock<T>,
    #[cfg(loom)]
    inner: loom::sync::RwLock<T>,
}

#[cfg(not(loom))]
pub(crate) type ReadGuard<'a, T> = parking_lot::RwLockReadGuard<'a, T>;
#[cfg(loom)]
pub(crate) type ReadGuard<'a, T> = loom::sync::RwLockReadGuard<'a, T>;
#[cfg(not(loom))]
pub(crate) type WriteGuard<'a, T> = parking_lot::RwLockWriteGuard<'a, T>;
#[cfg(loom)]
pub(crate) type WriteGuard<'a, T> = loom::sync::RwLockWriteGuard<'a, T>;

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock {
            #[cfg(not(loom))]
            inner: parking_lot::RwLock::new(value),
            #[cfg(loom)]
            inner: loom::sync::RwLock::new(value),
        }
    }

    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.read()
        }
        #[cfg(loom)]
        {
            self.inner.read().unwrap()
        }
    }

    #[inline]
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.write()
        }
        #[cfg(loom)]
        {
            self.inner.write().unwrap()
        }
    }
}

/// Deliberate bugs for the loom models' broken twins, which must fail: they prove
/// the models reach the interleavings that matter.
#[cfg(loom)]
pub(crate) mod broken {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// The bugs that can be switched on.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Bug {
        /// No bug.
        None = 0,
        /// A release checks for waiters and decrements in two steps instead of one
        /// compare-and-swap, so a waiter queueing in between is never woken.
        ReleaseCheckThenAct = 1,
        /// A waiter that leaves the queue forgets a permit granted to it meanwhile.
        LeaveForgetsGrant = 2,
        /// The GCRA reads and writes its word in two steps instead of one
        /// compare-and-swap, so two calls can both take the last slot.
        GcraLoadThenStore = 3,
        /// Closing a bulkhead marks it closed but leaves its waiters in the queue,
        /// where nobody answers them.
        CloseKeepsWaiters = 4,
        /// A rate-limit reservation reads and writes the word in two steps, so two
        /// waiters can reserve the same slot.
        ReserveLoadThenStore = 5,
        /// A keyed limiter inserting a new key does not look again, under the write
        /// lock, whether another call inserted it meanwhile: the second insert
        /// replaces the first with a fresh burst.
        KeyedNoRecheck = 6,
        /// Changing a bulkhead's limit skips the queue lock when nobody is counted
        /// as waiting, missing a caller that is joining the queue.
        SetLimitSkipsQueueLock = 7,
        /// Reconfiguring a rate limiter writes a zero interval before the new
        /// numbers, so a check in between moves the schedule by nothing.
        ReconfigureZeroIntervalFirst = 8,
    }

    static BUG: AtomicU8 = AtomicU8::new(0);

    /// Switches `bug` on (for the whole process: loom tests run one at a time).
    pub fn set(bug: Bug) {
        BUG.store(bug as u8, Ordering::SeqCst);
    }

    pub(crate) fn is(bug: Bug) -> bool {
        BUG.load(Ordering::SeqCst) == bug as u8
    }
}
