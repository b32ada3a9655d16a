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
//! A caller may take several permits at once. The queue is FIFO by call, not by
//! permit: the first waiter is served as soon as its permits fit, and nobody
//! overtakes it (a large request is not starved by small ones).
//!
//! The top bit of the word marks a closed bulkhead. Like a waiter it sends every
//! acquisition and release off the one-CAS paths, so closing costs the healthy path
//! nothing.
//!
//! Invariants (under the queue lock): `waiters == queue.waiting.len()`; while
//! `waiters > 0`, the first waiter's permits do not fit (`in_use + permits > limit`)
//! except for the moment between a limit increase and [`Core::set_limit`] granting
//! the queue; while `waiters > 0` or the bulkhead is closed, the word changes only
//! under the lock (every lock-free CAS expects the high half to be zero).

use std::collections::VecDeque;
use std::task::Waker;

use std::time::Duration;

use super::BulkheadFull;
use crate::sync::{AtomicU32, AtomicU64, CachePadded, Mutex, Ordering};

const IN_USE: u64 = 0xFFFF_FFFF;
const WAITER: u64 = 1 << 32;
const CLOSED: u64 = 1 << 63;
const WAITERS: u64 = !CLOSED & !IN_USE;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[inline]
fn in_use(state: u64) -> u32 {
    (state & IN_USE) as u32
}

#[inline]
fn waiters(state: u64) -> u32 {
    ((state & WAITERS) >> 32) as u32
}

/// Whether the lock-free paths are closed to this state: somebody waits, or the
/// bulkhead is closed.
#[inline]
fn blocked(state: u64) -> bool {
    state > IN_USE
}

/// What [`Core::enqueue`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// Capacity was free after all: the caller holds its permits.
    Acquired,
    /// The caller waits in the queue under this id.
    Queued(u64),
    /// The queue is full.
    QueueFull,
    /// The bulkhead is closed.
    Closed,
    /// More permits than the limit: they could never be granted.
    TooMany,
}

/// Where a queued caller stands, as [`Core::poll_grant`] and [`Core::leave`] see it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Its permits were granted: the caller holds them.
    Granted,
    /// Still waiting ([`Core::poll_grant`]), or removed from the queue now
    /// ([`Core::leave`]).
    Waiting,
    /// The bulkhead was closed while it waited.
    Closed,
    /// The limit was lowered below its permits while it waited.
    TooMany,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    permits: u32,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct WaitQueue {
    next_id: u64,
    /// Waiting, oldest first; ids increase along the queue.
    waiting: VecDeque<Waiter>,
    /// Granted their permits that they have not collected yet, by id.
    granted: Vec<u64>,
    /// Refused while waiting because the limit fell below their permits, by id.
    refused: Vec<u64>,
    closed: bool,
}

fn take(ids: &mut Vec<u64>, id: u64) -> bool {
    match ids.iter().position(|&g| g == id) {
        Some(i) => {
            ids.swap_remove(i);
            true
        }
        None => false,
    }
}

impl WaitQueue {
    fn position(&self, id: u64) -> Option<usize> {
        self.waiting.binary_search_by_key(&id, |w| w.id).ok()
    }
}

/// Wakers collected under the queue lock, woken after it: the first without
/// allocating.
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakers {
    fn push(&mut self, waker: Option<Waker>) {
        if self.first.is_none() {
            self.first = waker;
        } else {
            self.rest.extend(waker);
        }
    }

    fn wake(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
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
    cancelled: AtomicU64,
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
            cancelled: AtomicU64::new(0),
            name,
        }
    }

    /// Takes a permit if one is free and nobody waits: one CAS.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        self.try_acquire_n(1)
    }

    /// Takes `n` permits if they are free, nobody waits and the bulkhead is open:
    /// one CAS.
    #[inline]
    pub(crate) fn try_acquire_n(&self, n: u32) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if blocked(s) || u64::from(in_use(s)) + u64::from(n) > u64::from(limit) {
                return false;
            }
            match self.state.compare_exchange_weak(
                s,
                s + u64::from(n),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => s = actual,
            }
        }
    }

    /// Gives a permit back: one CAS while nobody waits, else a hand-over to the
    /// first waiter under the queue lock.
    #[inline]
    pub(crate) fn release(&self) {
        self.release_n(1)
    }

    /// Gives `n` permits back, as [`release`](Core::release).
    #[inline]
    pub(crate) fn release_n(&self, n: u32) {
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::ReleaseCheckThenAct) {
            if blocked(self.state.load(Ordering::Acquire)) {
                return self.release_slow(n);
            }
            self.state.fetch_sub(u64::from(n), Ordering::AcqRel);
            return;
        }
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if blocked(s) {
                return self.release_slow(n);
            }
            match self.state.compare_exchange_weak(
                s,
                s - u64::from(n),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
    }

    #[cold]
    fn release_slow(&self, n: u32) {
        let mut wakers = Wakers::default();
        {
            let mut q = self.queue.lock();
            let s = self.state.load(Ordering::Acquire);
            if waiters(s) == 0 {
                // Nobody to hand over to. Without the CLOSED bit the lock-free paths
                // may run again, so this is an atomic update, not a store.
                self.state.fetch_sub(u64::from(n), Ordering::AcqRel);
                return;
            }
            // Under the lock with waiters, the word is stable (see the module docs).
            let next = self.grant_fitting(&mut q, s, in_use(s) - n, &mut wakers);
            self.state.store(next, Ordering::Release);
        }
        wakers.wake();
    }

    /// Under the queue lock, with the word `s` stable and `in_use` permits in use:
    /// grants the first waiters whose permits fit (refusing a first waiter that
    /// asks for more than the limit), and returns the new word (to be stored by
    /// the caller).
    fn grant_fitting(
        &self,
        q: &mut WaitQueue,
        s: u64,
        mut in_use: u32,
        wakers: &mut Wakers,
    ) -> u64 {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut waiting = waiters(s);
        while let Some(first) = q.waiting.front() {
            let refuse = first.permits > limit;
            if !refuse && u64::from(in_use) + u64::from(first.permits) > u64::from(limit) {
                break;
            }
            let first = q.waiting.pop_front().expect("the queue has a first waiter");
            waiting -= 1;
            if refuse {
                // Queued under a higher limit: it could never be granted now.
                q.refused.push(first.id);
            } else {
                in_use += first.permits;
                q.granted.push(first.id);
            }
            wakers.push(first.waker);
        }
        (s & CLOSED) | (u64::from(waiting) << 32) | u64::from(in_use)
    }

    /// Joins the queue for `n` permits (or takes them if they have just been freed).
    pub(crate) fn enqueue(&self, n: u32) -> Enqueued {
        let mut q = self.queue.lock();
        if q.closed {
            return Enqueued::Closed;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        if n > limit {
            return Enqueued::TooMany;
        }
        let max_queue = self.max_queue.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let (next, outcome) = if waiters(s) == 0 && in_use(s) + n <= limit {
                (s + u64::from(n), Enqueued::Acquired)
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
                        q.waiting.push_back(Waiter {
                            id,
                            permits: n,
                            waker: None,
                        });
                    }
                    return outcome;
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// Whether waiter `id` has been answered: granted its permits (which it now
    /// holds), or refused; else registers `waker` to be woken when it is.
    pub(crate) fn poll_grant(&self, id: u64, waker: &Waker) -> Answer {
        let mut q = self.queue.lock();
        if take(&mut q.granted, id) {
            return Answer::Granted;
        }
        if let Some(i) = q.position(id) {
            let slot = &mut q.waiting[i].waker;
            match slot {
                Some(w) if w.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
            return Answer::Waiting;
        }
        Self::refusal(&mut q, id)
    }

    /// Why waiter `id`, neither granted nor waiting, was let go.
    fn refusal(q: &mut WaitQueue, id: u64) -> Answer {
        if take(&mut q.refused, id) {
            Answer::TooMany
        } else {
            Answer::Closed
        }
    }

    /// Waiter `id` leaves: it is removed from the queue ([`Answer::Waiting`]), or,
    /// if it was granted its permits meanwhile, they are returned to the caller
    /// ([`Answer::Granted`]), who then holds them; or it learns why it was refused.
    pub(crate) fn leave(&self, id: u64) -> Answer {
        let mut wakers = Wakers::default();
        {
            let mut q = self.queue.lock();
            if take(&mut q.granted, id) {
                #[cfg(loom)]
                if crate::sync::broken::is(crate::sync::broken::Bug::LeaveForgetsGrant) {
                    return Answer::Waiting;
                }
                return Answer::Granted;
            }
            let Some(i) = q.position(id) else {
                return Self::refusal(&mut q, id);
            };
            q.waiting.remove(i);
            // With waiters, the word is stable under the lock.
            let s = self.state.load(Ordering::Acquire) - WAITER;
            let next = if i == 0 {
                // The first waiter's permits no longer hold back those behind it.
                self.grant_fitting(&mut q, s, in_use(s), &mut wakers)
            } else {
                s
            };
            self.state.store(next, Ordering::Release);
        }
        wakers.wake();
        Answer::Waiting
    }

    /// Changes the limit; a higher limit is handed to the waiters at once, and
    /// waiters for more permits than a lower limit are refused at once.
    ///
    /// It always takes the queue lock, which a caller joining the queue holds from
    /// reading the limit to counting itself as a waiter: either that caller reads
    /// the new limit, or this sees it waiting and admits it. (Looking at the waiter
    /// count first and leaving when it is zero would miss a caller that read the
    /// old limit and has not counted itself yet: it would wait for the next
    /// release although the new limit has room.)
    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::SeqCst);
        #[cfg(loom)]
        if crate::sync::broken::is(crate::sync::broken::Bug::SetLimitSkipsQueueLock)
            && waiters(self.state.load(Ordering::SeqCst)) == 0
        {
            return;
        }
        let mut wakers = Wakers::default();
        {
            let mut q = self.queue.lock();
            let limit = self.limit.load(Ordering::Relaxed);
            let mut s = self.state.load(Ordering::Acquire);
            if waiters(s) == 0 {
                return;
            }
            let before = q.waiting.len();
            let mut refused = Vec::new();
            q.waiting.retain_mut(|w| {
                if w.permits > limit {
                    refused.push((w.id, w.waker.take()));
                    false
                } else {
                    true
                }
            });
            for (id, waker) in refused {
                q.refused.push(id);
                wakers.push(waker);
            }
            s -= WAITER * (before - q.waiting.len()) as u64;
            let next = self.grant_fitting(&mut q, s, in_use(s), &mut wakers);
            self.state.store(next, Ordering::Release);
        }
        wakers.wake();
    }

    /// Closes the bulkhead: every waiter is refused at once, and so is every call
    /// from now on; permits held stay valid until released.
    pub(crate) fn close(&self) -> bool {
        let mut wakers = Wakers::default();
        {
            let mut q = self.queue.lock();
            if q.closed {
                return false;
            }
            q.closed = true;
            #[cfg(loom)]
            if crate::sync::broken::is(crate::sync::broken::Bug::CloseKeepsWaiters) {
                self.state.fetch_or(CLOSED, Ordering::AcqRel);
                return true;
            }
            // From here the word is stable under the lock: the bit blocks the
            // lock-free paths.
            let s = self.state.fetch_or(CLOSED, Ordering::AcqRel) | CLOSED;
            let n = q.waiting.len() as u64;
            for w in q.waiting.drain(..) {
                wakers.push(w.waker);
            }
            self.state.store(s - WAITER * n, Ordering::Release);
        }
        wakers.wake();
        true
    }

    /// Whether the bulkhead is closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
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

    /// Counts a waiter that left the queue before it was answered.
    pub(crate) fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
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

    pub(crate) fn cancelled_total(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }
}
