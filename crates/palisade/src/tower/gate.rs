//! Where the services of one layer wait for a slot of a bulkhead without a
//! queue: woken when a call through any of them ends.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::task::Waker;

use parking_lot::Mutex;

/// The services of one layer not ready for want of a permit, woken
/// when a call through any of them ends. Touched on a healthy call only by one
/// load of `parked`.
#[derive(Default)]
pub(crate) struct Gate {
    parked: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl Gate {
    /// Registers `waker` to be woken at the next release.
    #[cold]
    #[cfg(feature = "limit")]
    pub(crate) fn park(&self, waker: &Waker) {
        let mut wakers = self.wakers.lock();
        if !wakers.iter().any(|w| w.will_wake(waker)) {
            wakers.push(waker.clone());
            self.parked.fetch_add(1, Ordering::SeqCst);
        }
        drop(wakers);
        // Pairs with the fence of `released`: either the releaser sees `parked`,
        // or the probe after this sees its free permit.
        fence(Ordering::SeqCst);
    }

    /// After a permit of this layer's went back.
    #[inline]
    pub(crate) fn released(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    #[cold]
    fn wake_all(&self) {
        // `parked` is cleared under the lock, so that a service parking right
        // after is counted (and woken by the next release).
        let wakers = {
            let mut wakers = self.wakers.lock();
            self.parked.store(0, Ordering::SeqCst);
            std::mem::take(&mut *wakers)
        };
        for w in wakers {
            w.wake();
        }
    }
}
