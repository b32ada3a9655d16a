//! Admission control for servers: an adaptive concurrency limit shared by
//! criticality classes, with a bounded, deadline-aware queue.
//!
//! An [`Admission`] controller decides, for each request arriving at a service,
//! whether it runs now, waits, or is refused:
//!
//! - **The limit** is an adaptive concurrency limit ([`AdaptiveConfig`](crate::adaptive::AdaptiveConfig): AIMD,
//!   Gradient2 or Vegas) learned from the latency each [`AdmissionPermit`]
//!   reports, or a fixed one ([`AdmissionConfig::fixed`]).
//! - **Criticality classes** ([`Criticality`]: critical, default, sheddable) each
//!   have a guaranteed share of the limit, as Netflix concurrency-limits'
//!   partitions. A share is enforced only when the whole limit is in use: while
//!   slots are free any class takes them, so spare capacity is never wasted; once
//!   it is full, a freed slot goes first to a waiting request of a class below its
//!   share (critical before default before sheddable), then to the most critical
//!   waiting request. The number admitted never exceeds the limit.
//! - **Retries** ([`Ticket::retry`]) are shed before first attempts: a retry runs
//!   only if a slot is free at once with nobody waiting; it never queues.
//! - **The queue** is bounded ([`max_queue`](AdmissionConfig::max_queue)); a
//!   request waits at most `min(max_wait, deadline − typical service time)`, and a
//!   request whose remaining deadline is shorter than the typical service time is
//!   refused at once instead of queued. A full queue makes room for a more
//!   critical request by evicting the oldest of the least critical class. The queue
//!   follows CoDel's control: once every request served for a whole
//!   [`interval`](AdmissionConfig::interval) waited longer than the
//!   [`target`](AdmissionConfig::target), it is *overloaded*: it serves the newest
//!   waiter first (LIFO, whose caller is most likely still there) and new waiters
//!   wait at most the target; otherwise it is FIFO. Entries that expired while
//!   waiting are dropped when a freed slot reaches them.
//!
//! # Drop safety
//!
//! Dropping an [`Acquire`] future while it waits leaves the queue at once (and
//! passes on a slot it was granted at that instant). Dropping an
//! [`AdmissionPermit`] without a report frees its slot and adds no sample to the
//! limit (a cancelled request says nothing of the service's capacity); report with
//! [`success`](AdmissionPermit::success) or [`dropped`](AdmissionPermit::dropped).
//!
//! # Cost
//!
//! A request admitted at once, and the release of its permit while nobody waits,
//! take no lock and allocate nothing: a compare-and-swap on one word (slots in
//! use, waiters), a clock reading and a counter per class. A request that waits
//! allocates its queue entry and takes a short `parking_lot` lock, as does a
//! release while requests wait. Reports update the limit under a lock that is only
//! ever tried, as [`AdaptiveLimiter`](crate::AdaptiveLimiter) does.
//!
//! # Example
//!
//! ```
//! use palisade_limit::admission::{Admission, AdmissionConfig, Criticality, Reason, Ticket};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let admission = Admission::new(AdmissionConfig::fixed(1)).unwrap();
//! let first = admission.acquire(Ticket::new(Criticality::Default)).await.unwrap();
//!
//! // The limit is in use: a retry is refused at once.
//! let retry = admission.acquire(Ticket::new(Criticality::Default).retry(true)).await;
//! assert_eq!(retry.unwrap_err().reason(), Reason::Retry);
//!
//! first.success();
//! let second = admission.acquire(Ticket::new(Criticality::Critical)).await.unwrap();
//! drop(second); // frees the slot, adds no sample
//! assert_eq!(admission.snapshot().in_flight, 0);
//! # }
//! ```

mod config;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
// Not modelled under loom: the standard library's atomics and parking_lot's lock.
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use palisade_classify::{Rejection, Strategy};
use palisade_clock::{Clock, DefaultClock, Timestamp};
use palisade_context::Context;

pub use config::AdmissionConfig;

use crate::adaptive::{Algorithm, Sample};
use crate::config::ConfigError;
use parking_lot::Mutex;
use crate::wait::{WaitError, under};

/// How much a request matters, for the order in which requests are shed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Criticality {
    /// Shed last: what the service exists for (a checkout, a login).
    Critical,
    /// Everything not marked otherwise.
    #[default]
    Default,
    /// Shed first: work that can be done later (prefetches, batch jobs).
    Sheddable,
}

impl Criticality {
    /// Every class, most critical first.
    pub const ALL: [Criticality; 3] = [
        Criticality::Critical,
        Criticality::Default,
        Criticality::Sheddable,
    ];

    /// Its name: `critical`, `default` or `sheddable`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Criticality::Critical => "critical",
            Criticality::Default => "default",
            Criticality::Sheddable => "sheddable",
        }
    }

    /// The class a name means (`critical`, `default`, `sheddable`, case
    /// insensitive; also gRPC's `CRITICAL_PLUS` and `SHEDDABLE_PLUS`), if any.
    pub fn parse(name: &str) -> Option<Criticality> {
        let name = name.trim();
        [
            ("critical", Criticality::Critical),
            ("critical_plus", Criticality::Critical),
            ("default", Criticality::Default),
            ("sheddable", Criticality::Sheddable),
            ("sheddable_plus", Criticality::Sheddable),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| c)
    }

    fn index(self) -> usize {
        match self {
            Criticality::Critical => 0,
            Criticality::Default => 1,
            Criticality::Sheddable => 2,
        }
    }
}

impl fmt::Display for Criticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request as admission sees it: its class, whether it is a retry, its deadline.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct Ticket {
    class: Criticality,
    retry: bool,
    deadline: Option<Timestamp>,
}

impl Ticket {
    /// A first attempt of class `class`, without a deadline.
    pub fn new(class: Criticality) -> Ticket {
        Ticket {
            class,
            retry: false,
            deadline: None,
        }
    }

    /// Marks it a retry (shed before first attempts) or not.
    pub fn retry(mut self, retry: bool) -> Ticket {
        self.retry = retry;
        self
    }

    /// Its deadline, on the controller's clock.
    pub fn deadline(mut self, deadline: Timestamp) -> Ticket {
        self.deadline = Some(deadline);
        self
    }

    /// Its class.
    pub fn class(&self) -> Criticality {
        self.class
    }

    /// Whether it is a retry.
    pub fn is_retry(&self) -> bool {
        self.retry
    }
}

/// Why a request was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The limit was in use and the queue full (or disabled).
    QueueFull,
    /// It waited as long as it could without a slot.
    QueueTimeout,
    /// Its deadline could not be met: refused at once, or it expired in the queue.
    Deadline,
    /// A retry, refused because the limit was in use.
    Retry,
    /// Pushed out of a full queue by a more critical request.
    Evicted,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 5] = [
        Reason::QueueFull,
        Reason::QueueTimeout,
        Reason::Deadline,
        Reason::Retry,
        Reason::Evicted,
    ];

    /// Its name, for metrics labels: `queue_full`, `queue_timeout`, `deadline`,
    /// `retry`, `evicted`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::QueueFull => "queue_full",
            Reason::QueueTimeout => "queue_timeout",
            Reason::Deadline => "deadline",
            Reason::Retry => "retry",
            Reason::Evicted => "evicted",
        }
    }

    fn index(self) -> usize {
        match self {
            Reason::QueueFull => 0,
            Reason::QueueTimeout => 1,
            Reason::Deadline => 2,
            Reason::Retry => 3,
            Reason::Evicted => 4,
        }
    }

    fn from_index(i: u8) -> Reason {
        Reason::ALL[usize::from(i).min(4)]
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused by an [`Admission`] controller. It converts into a
/// [`Rejection`] by [`Strategy::AdaptiveLimit`], with when to try again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AdmissionRejected {
    reason: Reason,
    class: Criticality,
    retry: bool,
    limit: u32,
    retry_after: Duration,
}

impl AdmissionRejected {
    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The request's class.
    pub fn class(&self) -> Criticality {
        self.class
    }

    /// Whether the request was a retry.
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The limit in effect.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// When to try again: the typical service time (a slot frees about then),
    /// at least 1 ms.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The rejection, for the outcome taxonomy.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::AdaptiveLimit).with_retry_after(self.retry_after)
    }
}

impl fmt::Display for AdmissionRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} request refused ({}) at a concurrency limit of {}",
            self.class, self.reason, self.limit
        )
    }
}

impl std::error::Error for AdmissionRejected {}

impl From<AdmissionRejected> for Rejection {
    fn from(e: AdmissionRejected) -> Rejection {
        e.rejection()
    }
}

/// The packed word of slots in use and requests waiting.
///
/// | bits | field |
/// | --- | --- |
/// | 0..32 | slots in use (permits held) |
/// | 32..64 | requests waiting in the queue |
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Word(u64);

impl Word {
    const WAITER: u64 = 1 << 32;

    fn in_flight(self) -> u32 {
        self.0 as u32
    }

    fn waiters(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const REFUSED: u8 = 2;
const LEFT: u8 = 3;

#[derive(Debug)]
struct Waiter {
    state: AtomicU8,
    reason: AtomicU8,
    waker: parking_lot::Mutex<Option<Waker>>,
}

impl Waiter {
    fn settle(&self, state: u8, reason: Reason) {
        self.reason.store(reason.index() as u8, Ordering::Relaxed);
        self.state.store(state, Ordering::Release);
        if let Some(waker) = self.waker.lock().take() {
            waker.wake();
        }
    }
}

#[derive(Debug)]
struct Entry {
    waiter: Arc<Waiter>,
    enqueued: Timestamp,
    expires: Timestamp,
    /// What an expiry means: a deadline-bound wait or a plain time-out.
    expiry: Reason,
}

#[derive(Debug, Default)]
struct Queue {
    classes: [VecDeque<Entry>; 3],
    /// When the standing delay, if it stays above the target, makes the queue
    /// overloaded (CoDel's `first_above_time`).
    first_above: Option<Timestamp>,
    overloaded: bool,
}

#[derive(Debug)]
struct Inner {
    config: AdmissionConfig,
    word: AtomicU64,
    limit: AtomicU32,
    class_in_flight: [AtomicU32; 3],
    /// The average reported latency, in nanoseconds (0 before any report).
    latency: AtomicU64,
    algorithm: Mutex<Algorithm>,
    queue: Mutex<Queue>,
    admitted: [AtomicU64; 3],
    queued: AtomicU64,
    refused: [AtomicU64; 5],
}

/// An admission controller; see the [module docs](self).
///
/// Cloning is cheap and clones share the limit and the queue.
pub struct Admission<C: Clock = DefaultClock> {
    inner: Arc<Inner>,
    clock: C,
}

impl<C: Clock> Clone for Admission<C> {
    fn clone(&self) -> Self {
        Admission {
            inner: self.inner.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Admission<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("config", &self.inner.config)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// An admission controller's counters at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionSnapshot {
    /// The limit of the moment.
    pub limit: u32,
    /// Permits held.
    pub in_flight: u32,
    /// Requests waiting.
    pub waiting: u32,
    /// Whether the queue is overloaded (serving LIFO).
    pub overloaded: bool,
    /// Requests admitted since creation, by class (critical, default, sheddable).
    pub admitted: [u64; 3],
    /// Requests that had to wait.
    pub queued: u64,
    /// Requests refused, by [`Reason`] in the order of [`Reason::ALL`].
    pub refused: [u64; 5],
    /// The typical service time (the average reported latency).
    pub latency: Duration,
}

impl Admission {
    /// A controller on the default (tokio) clock.
    pub fn new(config: AdmissionConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> Admission<C> {
    /// A controller reading time on `clock`.
    pub fn with_clock(config: AdmissionConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let limit = config.limit.initial_limit();
        Ok(Admission {
            inner: Arc::new(Inner {
                algorithm: Mutex::new(Algorithm::new(config.limit.clone())),
                config,
                word: AtomicU64::new(0),
                limit: AtomicU32::new(limit),
                class_in_flight: Default::default(),
                latency: AtomicU64::new(0),
                queue: Mutex::new(Queue::default()),
                admitted: Default::default(),
                queued: AtomicU64::new(0),
                refused: Default::default(),
            }),
            clock,
        })
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The limit of the moment.
    pub fn limit(&self) -> u32 {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// The configuration.
    pub fn config(&self) -> &AdmissionConfig {
        &self.inner.config
    }

    /// The counters of the moment.
    pub fn snapshot(&self) -> AdmissionSnapshot {
        let word = Word(self.inner.word.load(Ordering::Acquire));
        AdmissionSnapshot {
            limit: self.limit(),
            in_flight: word.in_flight(),
            waiting: word.waiters(),
            overloaded: self.inner.queue.lock().overloaded,
            admitted: self.inner.admitted.each(),
            queued: self.inner.queued.load(Ordering::Relaxed),
            refused: self.inner.refused.each(),
            latency: Duration::from_nanos(self.inner.latency.load(Ordering::Relaxed)),
        }
    }

    /// A slot for `ticket`'s request: at once, after waiting in the queue, or a
    /// refusal. Dropping the future leaves the queue.
    pub fn acquire(&self, ticket: Ticket) -> Acquire<C> {
        let state = match self.start(ticket) {
            Ok(Some(permit)) => AcquireState::Done(Some(Ok(permit))),
            Ok(None) => unreachable!("start queues through its own path"),
            Err(Start::Refused(e)) => AcquireState::Done(Some(Err(e))),
            Err(Start::Queued(waiter, expires)) => AcquireState::Waiting {
                waiter,
                sleep: Box::pin(self.clock.sleep_until(expires)),
            },
        };
        Acquire {
            admission: self.clone(),
            ticket,
            state,
        }
    }

    /// [`acquire`](Self::acquire) under the caller's context: the ticket's deadline
    /// is the earlier of its own and the context's (which is on the tokio clock's
    /// axis, shared by every clock but `ManualClock`), and the wait ends when the
    /// context does.
    pub async fn acquire_with(
        &self,
        ctx: &Context,
        mut ticket: Ticket,
    ) -> Result<AdmissionPermit<C>, WaitError<AdmissionRejected>> {
        if let Some(d) = ctx.deadline() {
            ticket.deadline = Some(ticket.deadline.map_or(d, |t| t.min(d)));
        }
        under(ctx, self.acquire(ticket)).await
    }

    fn permit(&self, class: Criticality, in_flight: u32) -> AdmissionPermit<C> {
        let inner = &self.inner;
        inner.class_in_flight[class.index()].fetch_add(1, Ordering::Relaxed);
        inner.admitted[class.index()].fetch_add(1, Ordering::Relaxed);
        AdmissionPermit {
            admission: Some(self.clone()),
            class,
            start: self.clock.now(),
            in_flight,
        }
    }

    fn refuse(&self, ticket: &Ticket, reason: Reason) -> AdmissionRejected {
        self.inner.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::trace!(
            class = ticket.class.as_str(),
            retry = ticket.retry,
            reason = reason.as_str(),
            "request refused"
        );
        AdmissionRejected {
            reason,
            class: ticket.class,
            retry: ticket.retry,
            limit: self.limit(),
            retry_after: self.latency().max(Duration::from_millis(1)),
        }
    }

    fn latency(&self) -> Duration {
        Duration::from_nanos(self.inner.latency.load(Ordering::Relaxed))
    }

    fn start(&self, ticket: Ticket) -> Result<Option<AdmissionPermit<C>>, Start> {
        let inner = &self.inner;
        let now = self.clock.now();
        let latency = self.latency();
        let mut bound = now.saturating_add(inner.config.max_wait);
        let mut expiry = Reason::QueueTimeout;
        if let Some(deadline) = ticket.deadline {
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() || (inner.config.refuse_unmeetable && remaining < latency) {
                return Err(Start::Refused(self.refuse(&ticket, Reason::Deadline)));
            }
            let latest = deadline - latency.min(remaining);
            if latest < bound {
                bound = latest;
                expiry = Reason::Deadline;
            }
        }
        // The healthy path: a free slot and nobody waiting.
        let mut word = Word(inner.word.load(Ordering::Acquire));
        while word.waiters() == 0 && word.in_flight() < self.limit() {
            match inner.word.compare_exchange_weak(
                word.0,
                word.0 + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(Some(self.permit(ticket.class, word.in_flight() + 1))),
                Err(w) => word = Word(w),
            }
        }
        if ticket.retry {
            return Err(Start::Refused(self.refuse(&ticket, Reason::Retry)));
        }
        if inner.config.max_queue == 0 {
            return Err(Start::Refused(self.refuse(&ticket, Reason::QueueFull)));
        }
        let mut queue = inner.queue.lock();
        if queue.overloaded {
            let cap = now.saturating_add(inner.config.target);
            if cap < bound {
                bound = cap;
                expiry = Reason::QueueTimeout;
            }
        }
        if bound <= now {
            drop(queue);
            return Err(Start::Refused(self.refuse(&ticket, expiry)));
        }
        let mut word = Word(inner.word.load(Ordering::Acquire));
        loop {
            if word.waiters() == 0 && word.in_flight() < self.limit() {
                match inner.word.compare_exchange_weak(
                    word.0,
                    word.0 + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        drop(queue);
                        return Ok(Some(self.permit(ticket.class, word.in_flight() + 1)));
                    }
                    Err(w) => word = Word(w),
                }
                continue;
            }
            if word.waiters() >= inner.config.max_queue {
                // Make room by evicting the oldest of a less critical class.
                let victim = (ticket.class.index() + 1..3)
                    .rev()
                    .find(|&c| !queue.classes[c].is_empty());
                let Some(victim) = victim else {
                    drop(queue);
                    return Err(Start::Refused(self.refuse(&ticket, Reason::QueueFull)));
                };
                let entry = queue.classes[victim].pop_front().expect("not empty");
                inner.refused[Reason::Evicted.index()].fetch_add(1, Ordering::Relaxed);
                entry.waiter.settle(REFUSED, Reason::Evicted);
                break; // its place in the count is taken over by this request
            }
            match inner.word.compare_exchange_weak(
                word.0,
                word.0 + Word::WAITER,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(w) => word = Word(w),
            }
        }
        let waiter = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            reason: AtomicU8::new(0),
            waker: parking_lot::Mutex::new(None),
        });
        queue.classes[ticket.class.index()].push_back(Entry {
            waiter: waiter.clone(),
            enqueued: now,
            expires: bound,
            expiry,
        });
        inner.queued.fetch_add(1, Ordering::Relaxed);
        // A slot may have freed (or the limit grown) meanwhile.
        self.dispatch(&mut queue, now);
        Err(Start::Queued(waiter, bound))
    }

    /// Hands free slots to waiters, under the queue's lock.
    fn dispatch(&self, queue: &mut Queue, now: Timestamp) {
        let inner = &self.inner;
        let shares = inner.config.shares();
        loop {
            let word = Word(inner.word.load(Ordering::Acquire));
            if word.waiters() == 0 {
                queue.first_above = None;
                queue.overloaded = false;
                return;
            }
            let limit = self.limit();
            if word.in_flight() >= limit {
                return;
            }
            // First a class below its guaranteed share, then the most critical.
            let under_share = (0..3).find(|&c| {
                !queue.classes[c].is_empty()
                    && f64::from(inner.class_in_flight[c].load(Ordering::Relaxed))
                        < (f64::from(limit) * shares[c]).floor()
            });
            let Some(class) =
                under_share.or_else(|| (0..3).find(|&c| !queue.classes[c].is_empty()))
            else {
                return;
            };
            let entry = if queue.overloaded {
                queue.classes[class].pop_back()
            } else {
                queue.classes[class].pop_front()
            }
            .expect("not empty");
            if entry.expires <= now {
                inner.word.fetch_sub(Word::WAITER, Ordering::AcqRel);
                inner.refused[entry.expiry.index()].fetch_add(1, Ordering::Relaxed);
                entry.waiter.settle(REFUSED, entry.expiry);
                continue;
            }
            // The slot passes to the waiter: one more in flight, one fewer waiting.
            inner
                .word
                .fetch_add(1u64.wrapping_sub(Word::WAITER), Ordering::AcqRel);
            self.codel(queue, now, now - entry.enqueued);
            inner.class_in_flight[class].fetch_add(1, Ordering::Relaxed);
            entry.waiter.settle(GRANTED, Reason::QueueFull);
        }
    }

    /// CoDel's state after a request waited `sojourn`.
    fn codel(&self, queue: &mut Queue, now: Timestamp, sojourn: Duration) {
        let c = &self.inner.config;
        if sojourn < c.target {
            queue.first_above = None;
            if queue.overloaded {
                queue.overloaded = false;
                tracing::debug!("admission queue no longer overloaded: FIFO");
            }
        } else {
            match queue.first_above {
                None => queue.first_above = Some(now.saturating_add(c.interval)),
                Some(at) if now >= at && !queue.overloaded => {
                    queue.overloaded = true;
                    tracing::debug!(
                        sojourn_us = sojourn.as_micros() as u64,
                        "admission queue overloaded: LIFO"
                    );
                }
                Some(_) => {}
            }
        }
    }

    /// Frees one slot; passes it on to a waiter if any.
    fn release(&self, class: Criticality) {
        let inner = &self.inner;
        inner.class_in_flight[class.index()].fetch_sub(1, Ordering::Relaxed);
        let mut word = Word(inner.word.load(Ordering::Acquire));
        while word.waiters() == 0 {
            match inner.word.compare_exchange_weak(
                word.0,
                word.0 - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(w) => word = Word(w),
            }
        }
        let mut queue = inner.queue.lock();
        inner.word.fetch_sub(1, Ordering::AcqRel);
        self.dispatch(&mut queue, self.clock.now());
    }

    /// A waiter leaves: returns whether it held a slot granted meanwhile (which
    /// the caller now owns).
    fn leave(&self, waiter: &Arc<Waiter>) -> u8 {
        let mut queue = self.inner.queue.lock();
        let state = waiter.state.load(Ordering::Acquire);
        if state != WAITING {
            return state;
        }
        for class in &mut queue.classes {
            if let Some(i) = class.iter().position(|e| Arc::ptr_eq(&e.waiter, waiter)) {
                class.remove(i);
                self.inner.word.fetch_sub(Word::WAITER, Ordering::AcqRel);
                break;
            }
        }
        waiter.state.store(LEFT, Ordering::Release);
        LEFT
    }

    fn report(&self, rtt: Duration, in_flight: u32, dropped: bool) {
        let inner = &self.inner;
        if !dropped {
            // An exponential average over about 16 reports; racing writers may
            // lose one another's update, which an average can afford.
            let old = inner.latency.load(Ordering::Relaxed);
            let new = rtt.as_nanos().min(u128::from(u64::MAX)) as u64;
            let avg = if old == 0 {
                new
            } else {
                old - old / 16 + new / 16
            };
            inner.latency.store(avg.max(1), Ordering::Relaxed);
        }
        let Some(mut algorithm) = inner.algorithm.try_lock() else {
            return;
        };
        let limit = algorithm
            .update(Sample {
                rtt,
                in_flight,
                dropped,
            })
            .max(1);
        drop(algorithm);
        let old = inner.limit.swap(limit, Ordering::AcqRel);
        if limit != old {
            tracing::debug!(old, new = limit, "admission limit moved");
            if limit > old && Word(inner.word.load(Ordering::Acquire)).waiters() > 0 {
                let mut queue = inner.queue.lock();
                self.dispatch(&mut queue, self.clock.now());
            }
        }
    }
}

trait Each {
    fn each<const N: usize>(&self) -> [u64; N]
    where
        Self: AsRef<[AtomicU64]>,
    {
        let mut out = [0; N];
        for (o, a) in out.iter_mut().zip(self.as_ref()) {
            *o = a.load(Ordering::Relaxed);
        }
        out
    }
}

impl<const M: usize> Each for [AtomicU64; M] {}

enum Start {
    Refused(AdmissionRejected),
    Queued(Arc<Waiter>, Timestamp),
}

enum AcquireState<C: Clock> {
    Done(Option<Result<AdmissionPermit<C>, AdmissionRejected>>),
    Waiting {
        waiter: Arc<Waiter>,
        sleep: Pin<Box<C::Sleep>>,
    },
}

/// The future of [`Admission::acquire`]: a permit, or why the request was refused.
///
/// Dropping it while it waits leaves the queue.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<C: Clock = DefaultClock> {
    admission: Admission<C>,
    ticket: Ticket,
    state: AcquireState<C>,
}

impl<C: Clock> fmt::Debug for Acquire<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("ticket", &self.ticket)
            .field(
                "waiting",
                &matches!(self.state, AcquireState::Waiting { .. }),
            )
            .finish()
    }
}

impl<C: Clock> Acquire<C> {
    fn granted(&self) -> AdmissionPermit<C> {
        let word = Word(self.admission.inner.word.load(Ordering::Relaxed));
        // The class count was raised by whoever granted the slot.
        self.admission.inner.admitted[self.ticket.class.index()].fetch_add(1, Ordering::Relaxed);
        AdmissionPermit {
            admission: Some(self.admission.clone()),
            class: self.ticket.class,
            start: self.admission.clock.now(),
            in_flight: word.in_flight(),
        }
    }
}

impl<C: Clock> Future for Acquire<C> {
    type Output = Result<AdmissionPermit<C>, AdmissionRejected>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let waiter = match &mut this.state {
            AcquireState::Done(result) => {
                return Poll::Ready(result.take().expect("Acquire polled after completion"));
            }
            AcquireState::Waiting { waiter, .. } => waiter.clone(),
        };
        let mut state = waiter.state.load(Ordering::Acquire);
        if state == WAITING {
            *waiter.waker.lock() = Some(cx.waker().clone());
            state = waiter.state.load(Ordering::Acquire);
        }
        if state == WAITING {
            let AcquireState::Waiting { sleep, .. } = &mut this.state else {
                unreachable!()
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            state = this.admission.leave(&waiter);
        }
        let result = match state {
            GRANTED => Ok(this.granted()),
            LEFT => {
                let expiry = this.admission.expiry_of(&this.ticket);
                Err(this.admission.refuse(&this.ticket, expiry))
            }
            _ => {
                let reason = Reason::from_index(waiter.reason.load(Ordering::Relaxed));
                Err(this.admission.reject_reason(&this.ticket, reason))
            }
        };
        this.state = AcquireState::Done(None);
        Poll::Ready(result)
    }
}

// Nothing is pinned in place: the timer is boxed.
impl<C: Clock> Unpin for Acquire<C> {}

impl<C: Clock> Admission<C> {
    /// A refusal already counted (by whoever settled the waiter).
    fn reject_reason(&self, ticket: &Ticket, reason: Reason) -> AdmissionRejected {
        AdmissionRejected {
            reason,
            class: ticket.class,
            retry: ticket.retry,
            limit: self.limit(),
            retry_after: self.latency().max(Duration::from_millis(1)),
        }
    }

    /// What a wait that timed out means for this ticket.
    fn expiry_of(&self, ticket: &Ticket) -> Reason {
        match ticket.deadline {
            Some(d) if self.clock.now().saturating_add(self.latency()) >= d => Reason::Deadline,
            _ => Reason::QueueTimeout,
        }
    }
}

impl<C: Clock> Drop for Acquire<C> {
    fn drop(&mut self) {
        if let AcquireState::Waiting { waiter, .. } = &self.state {
            let waiter = waiter.clone();
            if self.admission.leave(&waiter) == GRANTED {
                // Granted as it was dropped: pass the slot on.
                self.admission.release(self.ticket.class);
            }
        }
    }
}

/// One request's slot under an [`Admission`] controller; report how it ended.
///
/// Dropping it without a report frees the slot and adds no sample.
#[must_use = "report how the request ended, or the limit learns nothing from it"]
pub struct AdmissionPermit<C: Clock = DefaultClock> {
    admission: Option<Admission<C>>,
    class: Criticality,
    start: Timestamp,
    in_flight: u32,
}

impl<C: Clock> AdmissionPermit<C> {
    fn finish(mut self, dropped: Option<bool>) {
        let Some(admission) = self.admission.take() else {
            return;
        };
        let rtt = admission.clock.now() - self.start;
        admission.release(self.class);
        if let Some(dropped) = dropped {
            admission.report(rtt, self.in_flight, dropped);
        }
    }

    /// The request was served: its latency is a sample.
    pub fn success(self) {
        self.finish(Some(false))
    }

    /// The service dropped the request (overloaded, timed out).
    pub fn dropped(self) {
        self.finish(Some(true))
    }

    /// No sample: the request ended in a way that says nothing of capacity.
    pub fn ignore(self) {
        self.finish(None)
    }

    /// The request's class.
    pub fn class(&self) -> Criticality {
        self.class
    }

    /// When the request was admitted.
    pub fn start(&self) -> Timestamp {
        self.start
    }
}

impl<C: Clock> Drop for AdmissionPermit<C> {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            admission.release(self.class);
        }
    }
}

impl<C: Clock> fmt::Debug for AdmissionPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("class", &self.class)
            .field("start", &self.start)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}
