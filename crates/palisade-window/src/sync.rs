//! The one place that names atomics: std's, or loom's under `--cfg loom`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

pub(crate) use crossbeam_utils::CachePadded;

/// The number of stripes a time window spreads its counters over: enough that
/// threads recording at the same time rarely share one, few enough that a snapshot
/// stays cheap. The available parallelism rounded up to a power of two, from 2 to
/// 16. Under loom there is one stripe, so that every recorder races on the same
/// words.
pub(crate) fn stripe_count() -> usize {
    #[cfg(loom)]
    {
        1
    }
    #[cfg(not(loom))]
    {
        use std::sync::OnceLock;
        static STRIPES: OnceLock<usize> = OnceLock::new();
        *STRIPES.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpus.next_power_of_two().clamp(2, 16)
        })
    }
}

/// A small number that differs between the threads alive at the same time: the
/// stripe a thread records into is this number modulo the stripe count.
///
/// A thread takes the lowest free number on its first record and gives it back when
/// it exits, so live threads hold distinct numbers (up to 64 of them; beyond, numbers
/// are handed out in turn) and a short-lived thread does not leave a gap that makes
/// the next one share a stripe with a long-lived one.
#[cfg(all(test, not(loom)))]
pub(crate) fn thread_index() -> usize {
    index::get()
}

/// The stripe this thread records into: its number (see `thread_index`) modulo
/// [`stripe_count`], kept in a thread-local of its own so that recording reads it
/// with one load.
#[inline(always)]
pub(crate) fn stripe_index() -> usize {
    #[cfg(loom)]
    {
        0
    }
    #[cfg(not(loom))]
    {
        index::stripe()
    }
}

#[cfg(not(loom))]
mod index {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Bit `i` is set while a live thread holds number `i`.
    static HELD: AtomicU64 = AtomicU64::new(0);
    /// Numbers handed out in turn once all 64 are held.
    static NEXT: AtomicUsize = AtomicUsize::new(64);

    /// Gives the number back when its thread exits. Kept apart from `INDEX`, which
    /// has no destructor and so is read without a registration check.
    struct Release(Cell<usize>);

    impl Drop for Release {
        fn drop(&mut self) {
            let i = self.0.get();
            if i < 64 {
                HELD.fetch_and(!(1 << i), Ordering::Release);
            }
        }
    }

    std::thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
        /// `INDEX` modulo the stripe count, once the thread has a number.
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
        static RELEASE: Release = const { Release(Cell::new(usize::MAX)) };
    }

    #[inline]
    pub(super) fn get() -> usize {
        INDEX
            .try_with(|index| {
                let i = index.get();
                if i != usize::MAX {
                    return i;
                }
                let i = claim();
                index.set(i);
                i
            })
            // During the thread's own teardown: any stripe will do.
            .unwrap_or(0)
    }

    #[inline(always)]
    pub(super) fn stripe() -> usize {
        STRIPE
            .try_with(|stripe| {
                let s = stripe.get();
                if s != usize::MAX {
                    return s;
                }
                first_stripe(stripe)
            })
            // During the thread's own teardown: any stripe will do.
            .unwrap_or(0)
    }

    #[cold]
    #[inline(never)]
    fn first_stripe(stripe: &Cell<usize>) -> usize {
        let s = get() & (super::stripe_count() - 1);
        stripe.set(s);
        s
    }

    #[cold]
    fn claim() -> usize {
        let mut held = HELD.load(Ordering::Relaxed);
        while held != u64::MAX {
            let i = held.trailing_ones() as usize;
            match HELD.compare_exchange_weak(
                held,
                held | 1 << i,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if RELEASE.try_with(|release| release.0.set(i)).is_err() {
                        // The thread is exiting: give the number straight back.
                        HELD.fetch_and(!(1 << i), Ordering::Release);
                    }
                    return i;
                }
                Err(actual) => held = actual,
            }
        }
        NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1)
    }
}

/// Hooks that break the implementation on purpose, so that the loom models can show
/// they catch the bug each of them guards against.
#[cfg(loom)]
pub(crate) mod broken {
    use std::sync::atomic::{AtomicU8, Ordering};

    static BROKEN: AtomicU8 = AtomicU8::new(0);

    /// Which deliberate bug is switched on.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Bug {
        /// No bug.
        None = 0,
        /// Counter updates as a load and a store instead of one atomic step.
        LostUpdate = 1,
        /// A stale bucket is reset with a store, then counted with an add.
        SplitRollover = 2,
        /// Snapshots report the raw counts without bounding them.
        NoClamp = 3,
    }

    /// Switches `bug` on for the whole process.
    pub fn set(bug: Bug) {
        BROKEN.store(bug as u8, Ordering::SeqCst);
    }

    pub(crate) fn is(bug: Bug) -> bool {
        BROKEN.load(Ordering::Relaxed) == bug as u8
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::thread_index;

    #[test]
    fn live_threads_hold_distinct_indices_and_give_them_back() {
        let mine = thread_index();
        assert_eq!(thread_index(), mine);
        let theirs = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(theirs, mine);
        // The number is free again: the next thread may take it, and it is still
        // distinct from this live thread's.
        let next = std::thread::spawn(thread_index).join().unwrap();
        assert_ne!(next, mine);
    }
}
