use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;

use crate::{Clock, Timestamp};

/// A clock that moves only when told to: for deterministic tests.
///
/// Clones share one time, so a clone handed to a strategy, a spawned task or another
/// thread sees every [`advance`](ManualClock::advance). Sleeps complete when the time
/// is advanced past their deadline; no runtime is needed.
///
/// ```
/// use palisade_clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let other = clock.clone();
/// std::thread::spawn(move || other.advance(Duration::from_millis(250)))
///     .join()
///     .unwrap();
/// assert_eq!(clock.now().as_duration(), Duration::from_millis(250));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    now: AtomicU64,
    next_id: AtomicU64,
    /// Pending sleeps, by deadline then registration id.
    sleepers: Mutex<BTreeMap<(u64, u64), Waker>>,
}

impl ManualClock {
    /// A manual clock at [`Timestamp::ZERO`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A manual clock at `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        let clock = Self::default();
        clock.inner.now.store(start.as_nanos(), Ordering::Release);
        clock
    }

    /// Moves the time forward by `duration` (saturating at [`Timestamp::MAX`]) and
    /// wakes the sleeps that are due.
    pub fn advance(&self, duration: Duration) {
        let step = Timestamp::ZERO.saturating_add(duration).as_nanos();
        let _ = self
            .inner
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(step))
            });
        self.wake_due();
    }

    /// Moves the time forward to `target` and wakes the sleeps that are due. Time
    /// never goes backwards: a `target` before the current time changes nothing and
    /// returns `false`.
    pub fn advance_to(&self, target: Timestamp) -> bool {
        let previous = self
            .inner
            .now
            .fetch_max(target.as_nanos(), Ordering::AcqRel);
        self.wake_due();
        previous <= target.as_nanos()
    }

    /// How many sleeps are waiting for the time to move.
    pub fn pending_sleeps(&self) -> usize {
        self.inner.sleepers.lock().len()
    }

    fn wake_due(&self) {
        let now = self.inner.now.load(Ordering::Acquire);
        let due = {
            let mut sleepers = self.inner.sleepers.lock();
            let later = sleepers.split_off(&(now.saturating_add(1), 0));
            std::mem::replace(&mut *sleepers, later)
        };
        // Wake outside the lock.
        for (_, waker) in due {
            waker.wake();
        }
    }
}

impl Clock for ManualClock {
    type Sleep = ManualSleep;

    #[inline]
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.inner.now.load(Ordering::Acquire))
    }

    fn sleep_until(&self, deadline: Timestamp) -> ManualSleep {
        ManualSleep {
            inner: Arc::clone(&self.inner),
            deadline: deadline.as_nanos(),
            key: None,
        }
    }
}

/// A sleep on a [`ManualClock`]; completes when the clock is advanced to its
/// deadline. Dropping it removes its registration.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct ManualSleep {
    inner: Arc<Inner>,
    deadline: u64,
    key: Option<(u64, u64)>,
}

impl ManualSleep {
    /// The time this sleep completes at.
    pub fn deadline(&self) -> Timestamp {
        Timestamp::from_nanos(self.deadline)
    }
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.inner.now.load(Ordering::Acquire) >= this.deadline {
            this.unregister();
            return Poll::Ready(());
        }
        let mut sleepers = this.inner.sleepers.lock();
        // Checked again under the lock: `advance` stores the time before it takes the
        // lock to collect due sleepers, so a wake-up cannot be lost in between.
        if this.inner.now.load(Ordering::Acquire) >= this.deadline {
            if let Some(key) = this.key.take() {
                sleepers.remove(&key);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            (
                this.deadline,
                this.inner.next_id.fetch_add(1, Ordering::Relaxed),
            )
        });
        match sleepers.get_mut(&key) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                sleepers.insert(key, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl ManualSleep {
    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            self.inner.sleepers.lock().remove(&key);
        }
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn advance_moves_all_clones() {
        let a = ManualClock::new();
        let b = a.clone();
        a.advance(Duration::from_secs(2));
        assert_eq!(b.now(), Timestamp::from_duration(Duration::from_secs(2)));
        assert!(b.advance_to(Timestamp::from_duration(Duration::from_secs(5))));
        assert!(!a.advance_to(Timestamp::from_duration(Duration::from_secs(1))));
        assert_eq!(a.now(), Timestamp::from_duration(Duration::from_secs(5)));
        a.advance(Duration::MAX);
        assert_eq!(a.now(), Timestamp::MAX);
    }

    #[test]
    fn driven_from_several_threads() {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(7));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let clock = clock.clone();
                std::thread::spawn(move || {
                    let mut last = clock.now();
                    for _ in 0..10_000 {
                        clock.advance(Duration::from_nanos(1));
                        let now = clock.now();
                        assert!(now > last, "time went backwards or stood still");
                        last = now;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(clock.now().as_nanos(), 7 + 40_000);
    }

    #[tokio::test]
    async fn sleeps_complete_when_advanced() {
        let clock = ManualClock::new();
        let done = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for secs in [1u64, 2, 3] {
            let clock = clock.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                clock.sleep(Duration::from_secs(secs)).await;
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
        // Wait (boundedly, without sleeping) until the three sleeps are registered.
        while clock.pending_sleeps() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(done.load(Ordering::SeqCst), 0);
        clock.advance(Duration::from_millis(2500));
        while done.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(clock.pending_sleeps(), 1);
        assert_eq!(done.load(Ordering::SeqCst), 2);
        clock.advance(Duration::from_secs(1));
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[test]
    fn dropped_sleep_unregisters() {
        let clock = ManualClock::new();
        let mut sleep = Box::pin(clock.sleep(Duration::from_secs(1)));
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(clock.pending_sleeps(), 1);
        drop(sleep);
        assert_eq!(clock.pending_sleeps(), 0);
    }

    #[test]
    fn past_deadline_is_ready_at_once() {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(100));
        let mut sleep = Box::pin(clock.sleep_until(Timestamp::from_nanos(50)));
        let waker = futures_noop_waker();
        assert!(
            sleep
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
        );
        assert_eq!(clock.pending_sleeps(), 0);
    }

    fn futures_noop_waker() -> Waker {
        Waker::noop().clone()
    }
}
