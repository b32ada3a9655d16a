//! The bulkhead's shared state: one atomic word for the calls in flight and the
//! waiters queued, and a FIFO wait queue behind a mutex that only a full bulkhead
//! touches.
//!
//! The word packs `in_use` (low 32 bits) and `waiters` (high 32 bits) so that a
//! waiter joining the queue and a permit being released cannot miss each other:
//!
//! - acquiring without waiting is one CAS `in_use + 1`, allowed only while nobody
//!   waits (FIFO: a newcomer does not overtake the queue) and `in_use < limit`;
//! - releasing while nobody waits is one CAS `in_use - 1`; once `waiters > 0`, the
//!   releaser takes the queue lock and hands its permit to the first waiter
//!   (`waiters - 1`, `in_use` unchanged);
//! - a waiter joins with a CAS `waiters + 1` that succeeds only while the bulkhead is
//!   still full, under the queue lock, and pushes itself before unlocking, so a
//!   releaser that sees `waiters > 0` always finds it in the queue.
//!
//! Invariants (under the queue lock): `waiters == queue.waiting.len()`, and while
//! `waiters > 0`, `in_use >= limit` except for the moment between a limit increase
//! and [`Core::set_limit`] granting the queue.

use std::collections::VecDeque;
use std::task::Waker;

use std::time::Duration;

use super::BulkheadFull;
use crate::sync::{AtomicU32, AtomicU64, CachePadded, Mutex, Ordering};

const IN_USE: u64 = 0xFFFF_FFFF;
const WAITER: u64 = 1 << 32;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[inline]
fn in_use(state: u64) -> u32 {
    (state & IN_USE) as u32
}

#[inline]
fn waiters(state: u64) -> u32 {
    (state >> 32) as u32
}

/// What [`Core::enqueue`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Capacity was free after all: the caller holds a permit.
    Acquired,
    /// The caller waits in the queue under this id.
    Queued(u64),
    /// The queue is full.
    QueueFull,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct WaitQueue {
    next_id: u64,
    /// Waiting, oldest first; ids increase along the queue.
    waiting: VecDeque<Waiter>,
    /// Granted a permit that they have not collected yet, by id.
    granted: Vec<u64>,
}

impl WaitQueue {
    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.binary_search_by_key(&id, |w| w.id).ok()
    }

    fn take_grant(&mut self, id: u64) -> bool {
        match self.granted.iter().position(|&g| g == id) {
            Some(i) => {
                self.granted.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Core {
    state: CachePadded<AtomicU64>,
    limit: AtomicU32,
    max_queue: AtomicU32,
    queue: Mutex<WaitQueue>,
    max_wait_nanos: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    name: Box<str>,
}

impl Core {
    pub(crate) fn new(limit: u32, max_queue: u32, max_wait: Duration, name: Box<str>) -> Self {
        Core {
            state: CachePadded::new(AtomicU64::new(0)),
            limit: AtomicU32::new(limit),
            max_queue: AtomicU32::new(max_queue),
            queue: Mutex::new(WaitQueue::default()),
            max_wait_nanos: AtomicU64::new(nanos(max_wait)),
            rejected: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            name,
        }
    }

    /// Takes a permit if one is free and nobody waits: one CAS.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if waiters(s) != 0 || in_use(s) >= limit {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Gives a permit back: one CAS while nobody waits, else a hand-over to the
    /// first waiter under the queue lock.
    #[inline]
    pub(crate) fn release(&self) {
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::ReleaseCheckThenAct) {
            if waiters(self.state.load(Ordering::Acquire)) != 0 {
                return self.release_slow();
            }
            self.state.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if waiters(s) != 0 {
                return self.release_slow();
            }
            match self
                .state
                .compare_exchange_weak(s, s - 1, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    #[cold]
    fn release_slow(&self) {
        let waker = {
            let mut q = self.queue.lock();
            // Under the lock `waiters` cannot change, and nobody acquires without the
            // lock while it is non-zero; `in_use` is therefore stable too.
            let s = self.state.load(Ordering::Acquire);
            let limit = self.limit.load(Ordering::Relaxed);
            if waiters(s) > 0 && in_use(s) <= limit {
                let first = q
                    .waiting
                    .pop_front()
                    .expect("the queue holds as many waiters as the state counts");
                self.state.fetch_sub(WAITER, Ordering::AcqRel);
                q.granted.push(first.id);
                first.waker
            } else {
                // Nobody waits any more, or the limit was lowered below the calls
                // in flight: the permit goes away.
                self.state.fetch_sub(1, Ordering::AcqRel);
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Joins the queue (or takes a permit that has just been freed).
    pub(crate) fn enqueue(&self) -> Enqueued {
        let mut q = self.queue.lock();
        let limit = self.limit.load(Ordering::Relaxed);
        let max_queue = self.max_queue.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, outcome) = if waiters(s) == 0 && in_use(s) < limit {
                (s + 1, Enqueued::Acquired)
            } else if waiters(s) >= max_queue {
                return Enqueued::QueueFull;
            } else {
                (s + WAITER, Enqueued::Queued(q.next_id))
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if let Enqueued::Queued(id) = outcome {
                        q.next_id += 1;
                        q.waiting.push_back(Waiter { id, waker: None });
                    }
                    return outcome;
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Whether waiter `id` has been granted a permit (which it now holds); else
    /// registers `waker` to be woken when it is.
    pub(crate) fn poll_grant(&self, id: u64, waker: &Waker) -> bool {
        let mut q = self.queue.lock();
        if q.take_grant(id) {
            return true;
        }
        if let Some(i) = q.position(id) {
            let slot = &mut q.waiting[i].waker;
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
        false
    }

    /// Waiter `id` leaves: it is removed from the queue, or, if it was granted a
    /// permit meanwhile, the permit is returned to the caller (`true`), who then
    /// holds it.
    pub(crate) fn leave(&self, id: u64) -> bool {
        let mut q = self.queue.lock();
        if q.take_grant(id) {
            #[cfg(loom)]
            if crate::sync::broken::is(crate::sync::broken::Bug::LeaveForgetsGrant) {
                return false;
            }
            return true;
        }
        if let Some(i) = q.position(id) {
            q.waiting.remove(i);
            self.state.fetch_sub(WAITER, Ordering::AcqRel);
        }
        false
    }

    /// Changes the limit; a higher limit is handed to the waiters at once.
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::SeqCst);
        if waiters(self.state.load(Ordering::SeqCst)) == 0 {
            // Nobody to admit. A caller joining the queue right now read the old
            // limit; it is admitted by the next release (calls are in flight, or it
            // would not have queued).
            return;
        }
        let mut wakers = Vec::new();
        {
            let mut q = self.queue.lock();
            let limit = self.limit.load(Ordering::Relaxed);
            let mut s = self.state.load(Ordering::Acquire);
            while waiters(s) > 0 && in_use(s) < limit {
                let first = q
                    .waiting
                    .pop_front()
                    .expect("the queue holds as many waiters as the state counts");
                s = self.state.fetch_sub(WAITER - 1, Ordering::AcqRel) - (WAITER - 1);
                q.granted.push(first.id);
                wakers.extend(first.waker);
            }
        }
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn set_max_queue(&self, max_queue: u32) {
        self.max_queue.store(max_queue, Ordering::Relaxed);
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn max_queue(&self) -> u32 {
        self.max_queue.load(Ordering::Relaxed)
    }

    /// `(in_use, waiters)`.
    pub(crate) fn load(&self) -> (u32, u32) {
        let s = self.state.load(Ordering::Acquire);
        (in_use(s), waiters(s))
    }

    /// Counts a refusal and reports it as a tracing event.
    pub(crate) fn rejected(&self, e: &BulkheadFull) {
        if e.is_timed_out() {
            self.timed_out.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        let (in_flight, waiting) = self.load();
        tracing::debug!(
            bulkhead = &*self.name,
            in_flight,
            waiting,
            limit = e.limit(),
            "{e}"
        );
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn max_wait(&self) -> Duration {
        Duration::from_nanos(self.max_wait_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_max_wait(&self, max_wait: Duration) {
        self.max_wait_nanos
            .store(nanos(max_wait), Ordering::Relaxed);
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }
}
