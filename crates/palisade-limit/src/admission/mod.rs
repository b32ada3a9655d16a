//! Admission control for servers: an adaptive concurrency limit shared by
//! criticality classes, with a bounded, deadline-aware queue.
//!
//! An [`AdmissionController`] decides, for each inbound request, whether it runs
//! now, waits, or is refused. It combines:
//!
//! - **an adaptive limit** ([`AdaptiveConfig`]: AIMD, Gradient2 or Vegas) that
//!   follows the service's capacity from each request's measured service time;
//! - **criticality classes** ([`Criticality`]: critical, default, sheddable) and a
//!   **retry marker**. Each class has a guaranteed share of the limit ([`Shares`]),
//!   in the style of Netflix concurrency-limits' partitions, enforced only when the
//!   whole limit is in use: while there is room anyone runs, so spare capacity is
//!   never wasted; when a slot frees under contention it goes first to a waiting
//!   class below its share, then by rank. The rank is critical, critical retry,
//!   default, default retry, sheddable, sheddable retry: a retry is served after
//!   the first attempts of its class and evicted before them, so retries cannot
//!   amplify an overload;
//! - **a queue that serves the useful requests**: bounded (`max_queue`); a request
//!   waits at most `min(max_wait, its remaining deadline − the service time)`; one
//!   whose deadline cannot be met is refused at once ([`Reason::Deadline`]) instead
//!   of queued, and entries whose deadline passed while they waited are dropped
//!   when reached ([`Reason::Expired`]). CoDel-style control: when the shortest
//!   wait over an `interval` stayed above `target`, the queue is *overloaded*: it
//!   serves the newest request first (LIFO, the one whose caller is still there)
//!   and waits at most `target`; otherwise it is FIFO.
//!
//! Waiting is drop-safe: a dropped [`Admit`] leaves the queue (or hands back the
//! slot it was granted at that moment), and a dropped [`AdmissionPermit`] frees
//! its slot.
//!
//! # Cost
//!
//! A request admitted while nobody waits takes no lock and allocates nothing: an
//! atomic load of the queue length, a compare-and-swap on the count in flight and
//! an increment of its class's count (plus a clock reading if it has a deadline).
//! Queueing takes a short `parking_lot` lock on the queue and allocates the
//! waiter; so does the release of a permit while requests wait, to hand them the
//! slot. The algorithm is updated under a lock that is only ever tried.
//!
//! # Example
//!
//! ```
//! use palisade_limit::admission::{AdmissionConfig, AdmissionController, Criticality, Request};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let controller = AdmissionController::new(AdmissionConfig::default()).unwrap();
//! let permit = controller
//!     .acquire(Request::new(Criticality::Critical))
//!     .await
//!     .unwrap();
//! // ... serve the request ...
//! permit.success();
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use palisade_classify::{Outcome, Rejection, Strategy};
use palisade_clock::{Clock, DefaultClock, Timestamp};
use palisade_context::Context;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::adaptive::{AdaptiveConfig, Algorithm, Sample};
use crate::config::{ConfigError, MAX_DURATION, check_duration, check_f64, check_range};

/// How much a request matters to the service, from most to least.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Criticality {
    /// Must be served if at all possible (a user waits on it, or money does).
    Critical,
    /// The ordinary request.
    #[default]
    Default,
    /// May be refused first under overload (batch, prefetch, analytics).
    Sheddable,
}

impl Criticality {
    /// Every class, most critical first.
    pub const ALL: [Criticality; 3] = [
        Criticality::Critical,
        Criticality::Default,
        Criticality::Sheddable,
    ];

    /// Its name, as in headers and metrics: `critical`, `default`, `sheddable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::Critical => "critical",
            Criticality::Default => "default",
            Criticality::Sheddable => "sheddable",
        }
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

/// The text was no criticality.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownCriticality;

impl fmt::Display for UnknownCriticality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown criticality (expected critical, default or sheddable)")
    }
}

impl std::error::Error for UnknownCriticality {}

impl FromStr for Criticality {
    type Err = UnknownCriticality;

    /// Reads `critical`, `default`, `sheddable` in any case, and the gRPC/Google
    /// forms `CRITICAL_PLUS` (critical) and `SHEDDABLE_PLUS` (sheddable).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        for (name, c) in [
            ("critical", Criticality::Critical),
            ("critical_plus", Criticality::Critical),
            ("default", Criticality::Default),
            ("sheddable", Criticality::Sheddable),
            ("sheddable_plus", Criticality::Sheddable),
        ] {
            if s.eq_ignore_ascii_case(name) {
                return Ok(c);
            }
        }
        Err(UnknownCriticality)
    }
}

/// A Context value marking the request as a retry of an earlier attempt (the
/// attempt number, 1 for the first retry). Set by the application or read from a
/// header by the server layer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RetryAttempt(pub u32);

/// One request asking to be admitted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// Its class.
    pub criticality: Criticality,
    /// Whether it is a retry of an earlier attempt.
    pub retry: bool,
    /// When its caller gives up, if it said (on the controller's clock).
    pub deadline: Option<Timestamp>,
}

impl Request {
    /// A first attempt of this class, without deadline.
    pub fn new(criticality: Criticality) -> Self {
        Request {
            criticality,
            retry: false,
            deadline: None,
        }
    }

    /// The request of a [`Context`]: its deadline, its [`Criticality`] value (default
    /// if none) and its [`RetryAttempt`] value (a retry if above 0).
    pub fn from_context(ctx: &Context) -> Self {
        Request {
            criticality: ctx.get::<Criticality>().copied().unwrap_or_default(),
            retry: ctx.get::<RetryAttempt>().is_some_and(|r| r.0 > 0),
            deadline: ctx.deadline(),
        }
    }

    /// Marks it as a retry or not.
    pub fn with_retry(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// Sets its deadline.
    pub fn with_deadline(mut self, deadline: Option<Timestamp>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Its rank in the queue, 0 served first: class by class, retries after first
    /// attempts.
    fn rank(&self) -> usize {
        self.criticality.index() * 2 + usize::from(self.retry)
    }
}

/// The guaranteed share of the limit of each class, as fractions of 1; together at
/// most 1. A share is enforced only when the whole limit is in use.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Shares {
    /// Critical requests; `0..=1`. Default 0.5: half the capacity stays reachable
    /// for what matters most even when everything else floods in.
    pub critical: f64,
    /// Default requests; `0..=1`. Default 0.4.
    pub default: f64,
    /// Sheddable requests; `0..=1`. Default 0.1: enough that batch work is not
    /// starved for ever under sustained load.
    pub sheddable: f64,
}

impl Default for Shares {
    fn default() -> Self {
        Shares {
            critical: 0.5,
            default: 0.4,
            sheddable: 0.1,
        }
    }
}

impl Shares {
    /// Checks each share is in `0..=1` and that they add up to at most 1 (100 %).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_f64("shares.critical", self.critical, 0.0, 1.0)?;
        check_f64("shares.default", self.default, 0.0, 1.0)?;
        check_f64("shares.sheddable", self.sheddable, 0.0, 1.0)?;
        let sum = self.critical + self.default + self.sheddable;
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                "shares",
                format!("{:.0} %", sum * 100.0),
                "a sum of at most 100 %",
            ));
        }
        Ok(())
    }

    fn get(&self, class: usize) -> f64 {
        [self.critical, self.default, self.sheddable][class]
    }
}

/// An [`AdmissionController`]'s settings. In serde form durations are written in
/// the [duration grammar](palisade_clock::duration#the-grammar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdmissionConfig {
    /// The algorithm that moves the limit. Default Gradient2 (it backs off as soon
    /// as service times grow, before anything fails).
    pub limit: AdaptiveConfig,
    /// The guaranteed share of each class. Default 50 / 40 / 10 %.
    pub shares: Shares,
    /// Requests waiting at most; `0..=100_000` (0: refuse when full). Default 100:
    /// a few service times' worth at a typical limit, not more, since a long queue
    /// only adds latency.
    pub max_queue: u32,
    /// The longest wait; `0s..=1day`. Default 1 s (a request's own deadline
    /// usually bounds it sooner).
    #[serde(with = "palisade_clock::duration::serde")]
    pub max_wait: Duration,
    /// CoDel's target: the queue counts as overloaded when the shortest wait over
    /// an interval stayed above this; and while overloaded no request waits longer;
    /// `1us..=interval`. Default 5 ms (CoDel's).
    #[serde(with = "palisade_clock::duration::serde")]
    pub target: Duration,
    /// CoDel's interval, over which the shortest wait is measured; `1us..=1day`.
    /// Default 100 ms (CoDel's).
    #[serde(with = "palisade_clock::duration::serde")]
    pub interval: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            limit: AdaptiveConfig::default(),
            shares: Shares::default(),
            max_queue: 100,
            max_wait: Duration::from_secs(1),
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

impl AdmissionConfig {
    /// The defaults with this limit algorithm.
    pub fn new(limit: AdaptiveConfig) -> Self {
        AdmissionConfig {
            limit,
            ..AdmissionConfig::default()
        }
    }

    /// Sets the shares.
    pub fn with_shares(mut self, shares: Shares) -> Self {
        self.shares = shares;
        self
    }

    /// Sets the queue's bound and longest wait.
    pub fn with_queue(mut self, max_queue: u32, max_wait: Duration) -> Self {
        self.max_queue = max_queue;
        self.max_wait = max_wait;
        self
    }

    /// Sets CoDel's target and interval.
    pub fn with_codel(mut self, target: Duration, interval: Duration) -> Self {
        self.target = target;
        self.interval = interval;
        self
    }

    /// Checks every field against its range (zero limits, shares above 100 %, a
    /// target above the interval are errors naming the field).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limit.validate().map_err(|e| e.within("limit"))?;
        self.shares.validate()?;
        check_range("max_queue", self.max_queue, 0, 100_000)?;
        check_duration("max_wait", self.max_wait, Duration::ZERO, MAX_DURATION)?;
        check_duration(
            "interval",
            self.interval,
            Duration::from_micros(1),
            MAX_DURATION,
        )?;
        check_duration(
            "target",
            self.target,
            Duration::from_micros(1),
            self.interval,
        )
    }
}

/// Why a request was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The limit was in use and the queue is disabled (`max_queue` 0), or the
    /// caller would not wait.
    LimitReached,
    /// The queue was full of requests that rank as high or higher.
    QueueFull,
    /// Its deadline could not be met: refused at once, not queued, or let go when
    /// the time left no longer covered the service time.
    Deadline,
    /// It waited as long as allowed.
    TimedOut,
    /// Its deadline passed while it waited: dropped when reached.
    Expired,
    /// It waited and a request of a higher rank took its place in the full queue.
    Evicted,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 6] = [
        Reason::LimitReached,
        Reason::QueueFull,
        Reason::Deadline,
        Reason::TimedOut,
        Reason::Expired,
        Reason::Evicted,
    ];

    /// Its name, as in metrics: `limit`, `queue_full`, `deadline`, `timed_out`,
    /// `expired`, `evicted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LimitReached => "limit",
            Reason::QueueFull => "queue_full",
            Reason::Deadline => "deadline",
            Reason::TimedOut => "timed_out",
            Reason::Expired => "expired",
            Reason::Evicted => "evicted",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A request was refused admission.
///
/// It converts into a [`Rejection`] by [`Strategy::AdaptiveLimit`], with when to
/// try again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    reason: Reason,
    criticality: Criticality,
    retry: bool,
    limit: u32,
    retry_after: Duration,
}

impl Refused {
    /// Why.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The refused request's class.
    pub fn criticality(&self) -> Criticality {
        self.criticality
    }

    /// Whether the refused request was a retry.
    pub fn is_retry(&self) -> bool {
        self.retry
    }

    /// The limit in effect.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// When the caller may try again: the CoDel interval (the time in which the
    /// controller's view of the load changes).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The rejection, for the outcome taxonomy.
    pub fn rejection(&self) -> Rejection {
        Rejection::new(Strategy::AdaptiveLimit).with_retry_after(self.retry_after)
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} request refused ({}), limit {}",
            self.criticality,
            if self.retry { " retry" } else { "" },
            self.reason.as_str(),
            self.limit
        )
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for Rejection {
    fn from(e: Refused) -> Rejection {
        e.rejection()
    }
}

/// Where a waiter stands; changed only under the queue's lock.
#[derive(Debug)]
enum SlotState {
    Waiting(Option<Waker>),
    Granted,
    Refused(Reason),
}

#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    request: Request,
    enqueued: Timestamp,
}

#[derive(Debug)]
struct Queue {
    /// One bucket per rank.
    buckets: [VecDeque<Entry>; 6],
    len: usize,
    interval_start: Timestamp,
    min_wait: Option<Duration>,
    overloaded: bool,
}

impl Queue {
    fn remove(&mut self, slot: &Arc<Slot>, rank: usize) -> bool {
        let bucket = &mut self.buckets[rank];
        if let Some(i) = bucket.iter().position(|e| Arc::ptr_eq(&e.slot, slot)) {
            bucket.remove(i);
            self.len -= 1;
            true
        } else {
            false
        }
    }
}

struct Inner<C: Clock> {
    clock: C,
    config: AdmissionConfig,
    limit: AtomicU32,
    in_flight: AtomicU32,
    class_in_flight: [AtomicU32; 3],
    queued: AtomicU32,
    /// A moving average of service times, in nanoseconds.
    service_ns: AtomicU64,
    algorithm: Mutex<Algorithm>,
    queue: Mutex<Queue>,
    admitted: [AtomicU64; 3],
    refused: [[AtomicU64; 6]; 3],
}

/// Admission control for a server; see the [module docs](self).
///
/// Cloning is cheap and clones share the limit and the queue.
pub struct AdmissionController<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for AdmissionController<C> {
    fn clone(&self) -> Self {
        AdmissionController {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for AdmissionController<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionController")
            .field("config", &self.inner.config)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl AdmissionController {
    /// A controller on the default (tokio) clock, on which Context deadlines are.
    pub fn new(config: AdmissionConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock> AdmissionController<C> {
    /// A controller reading time on `clock`; request deadlines are on that clock.
    pub fn with_clock(config: AdmissionConfig, clock: C) -> Result<Self, ConfigError> {
        config.validate()?;
        let now = clock.now();
        Ok(AdmissionController {
            inner: Arc::new(Inner {
                limit: AtomicU32::new(config.limit.initial_limit()),
                algorithm: Mutex::new(Algorithm::new(config.limit.clone())),
                in_flight: AtomicU32::new(0),
                class_in_flight: Default::default(),
                queued: AtomicU32::new(0),
                service_ns: AtomicU64::new(0),
                queue: Mutex::new(Queue {
                    buckets: Default::default(),
                    len: 0,
                    interval_start: now,
                    min_wait: None,
                    overloaded: false,
                }),
                admitted: Default::default(),
                refused: Default::default(),
                clock,
                config,
            }),
        })
    }

    /// The limit of the moment.
    pub fn limit(&self) -> u32 {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// Requests admitted and not yet finished.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Requests waiting.
    pub fn queued(&self) -> u32 {
        self.inner.queued.load(Ordering::Acquire)
    }

    /// The configuration.
    pub fn config(&self) -> &AdmissionConfig {
        &self.inner.config
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// The estimated service time (a moving average of admitted requests' times).
    pub fn service_time(&self) -> Duration {
        Duration::from_nanos(self.inner.service_ns.load(Ordering::Relaxed))
    }

    /// Whether the queue is in its overloaded (LIFO, short waits) mode.
    pub fn is_overloaded(&self) -> bool {
        self.inner.queue.lock().overloaded
    }

    /// Admits now or refuses now; never waits.
    pub fn try_acquire(&self, request: Request) -> Result<AdmissionPermit<C>, Refused> {
        if let Some(e) = self.unmeetable(&request) {
            return Err(e);
        }
        if self.inner.queued.load(Ordering::SeqCst) == 0 && self.inner.try_take() {
            return Ok(self.permit(request));
        }
        Err(self.refuse(&request, Reason::LimitReached))
    }

    /// Admits, waits in the queue, or refuses; see the [module docs](self).
    pub fn acquire(&self, request: Request) -> Admit<C> {
        Admit {
            controller: self.clone(),
            request,
            state: AdmitState::Start,
        }
    }

    /// [`acquire`](Self::acquire) with the request of a [`Context`]
    /// ([`Request::from_context`]).
    pub fn acquire_with(&self, ctx: &Context) -> Admit<C> {
        self.acquire(Request::from_context(ctx))
    }

    /// The counters of the moment.
    pub fn snapshot(&self) -> AdmissionSnapshot {
        let i = &self.inner;
        AdmissionSnapshot {
            limit: self.limit(),
            in_flight: self.in_flight(),
            queued: self.queued(),
            admitted: std::array::from_fn(|c| i.admitted[c].load(Ordering::Relaxed)),
            refused: std::array::from_fn(|c| {
                std::array::from_fn(|r| i.refused[c][r].load(Ordering::Relaxed))
            }),
        }
    }

    fn unmeetable(&self, request: &Request) -> Option<Refused> {
        let deadline = request.deadline?;
        let remaining = deadline.saturating_duration_since(self.inner.clock.now());
        (remaining.is_zero() || remaining < self.service_time())
            .then(|| self.refuse(request, Reason::Deadline))
    }

    fn refused_error(&self, request: &Request, reason: Reason) -> Refused {
        Refused {
            reason,
            criticality: request.criticality,
            retry: request.retry,
            limit: self.limit(),
            retry_after: self.inner.config.interval,
        }
    }

    /// Counts a refusal and reports it as an event.
    fn refuse(&self, request: &Request, reason: Reason) -> Refused {
        let class = request.criticality.index();
        self.inner.refused[class][reason.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            criticality = request.criticality.as_str(),
            retry = request.retry,
            reason = reason.as_str(),
            "admission refused"
        );
        self.refused_error(request, reason)
    }

    /// A permit for a request already counted in `in_flight`.
    fn permit(&self, request: Request) -> AdmissionPermit<C> {
        let class = request.criticality.index();
        let in_flight = self.inner.in_flight.load(Ordering::Relaxed);
        self.inner.class_in_flight[class].fetch_add(1, Ordering::AcqRel);
        self.inner.admitted[class].fetch_add(1, Ordering::Relaxed);
        AdmissionPermit {
            controller: self.clone(),
            class,
            start: self.inner.clock.now(),
            in_flight,
            done: false,
        }
    }

    /// Joins the queue, or is admitted if a slot is free once in it.
    fn enqueue(&self, request: Request) -> Result<Option<Arc<Slot>>, Refused> {
        let inner = &self.inner;
        let max_queue = inner.config.max_queue as usize;
        if max_queue == 0 {
            // No queue: only a free slot.
            return if inner.try_take() {
                Ok(None)
            } else {
                Err(self.refuse(&request, Reason::LimitReached))
            };
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Waiting(None)),
        });
        let now = inner.clock.now();
        let mut queue = inner.queue.lock();
        if queue.len >= max_queue {
            // Evict the newest waiter of the lowest rank, if it ranks below this one.
            let rank = request.rank();
            let victim = (rank + 1..6).rev().find(|&r| !queue.buckets[r].is_empty());
            let Some(victim) = victim else {
                drop(queue);
                return Err(self.refuse(&request, Reason::QueueFull));
            };
            let entry = queue.buckets[victim].pop_back().expect("non-empty bucket");
            queue.len -= 1;
            inner.queued.fetch_sub(1, Ordering::SeqCst);
            self.settle(&entry, SlotState::Refused(Reason::Evicted));
        }
        queue.buckets[request.rank()].push_back(Entry {
            slot: slot.clone(),
            request,
            enqueued: now,
        });
        queue.len += 1;
        inner.queued.fetch_add(1, Ordering::SeqCst);
        self.dispatch(&mut queue, now);
        drop(queue);
        Ok(Some(slot))
    }

    fn settle(&self, entry: &Entry, to: SlotState) {
        if let SlotState::Refused(reason) = to {
            self.refuse(&entry.request, reason);
        }
        let mut state = entry.slot.state.lock();
        if let SlotState::Waiting(Some(waker)) = std::mem::replace(&mut *state, to) {
            waker.wake();
        }
    }

    /// Hands free slots to waiters, best first; under the queue's lock.
    fn dispatch(&self, queue: &mut Queue, now: Timestamp) {
        let inner = &self.inner;
        let config = &inner.config;
        if now.saturating_duration_since(queue.interval_start) >= config.interval {
            let overloaded = queue.min_wait.is_some_and(|w| w > config.target);
            if overloaded != queue.overloaded {
                tracing::info!(overloaded, "admission queue changed mode");
            }
            queue.overloaded = overloaded;
            queue.min_wait = None;
            queue.interval_start = now;
        }
        while queue.len > 0 {
            if !inner.try_take() {
                return;
            }
            let Some(entry) = self.next(queue, now) else {
                inner.in_flight.fetch_sub(1, Ordering::SeqCst);
                break;
            };
            let waited = now.saturating_duration_since(entry.enqueued);
            queue.min_wait = Some(queue.min_wait.map_or(waited, |m| m.min(waited)));
            // The permit counts its class when the waiter takes it.
            self.settle(&entry, SlotState::Granted);
        }
        // An emptied queue is no standing queue.
        queue.min_wait = Some(Duration::ZERO);
    }

    /// The next waiter to serve, dropping those whose deadline passed.
    fn next(&self, queue: &mut Queue, now: Timestamp) -> Option<Entry> {
        let inner = &self.inner;
        let limit = f64::from(self.limit());
        let service = self.service_time();
        loop {
            if queue.len == 0 {
                return None;
            }
            // Classes below their share first, then by rank.
            let under = |class: usize| {
                f64::from(inner.class_in_flight[class].load(Ordering::Acquire))
                    < inner.config.shares.get(class) * limit
            };
            let rank = (0..6)
                .find(|&r| !queue.buckets[r].is_empty() && under(r / 2))
                .or_else(|| (0..6).find(|&r| !queue.buckets[r].is_empty()))?;
            let entry = if queue.overloaded {
                queue.buckets[rank].pop_back()
            } else {
                queue.buckets[rank].pop_front()
            }
            .expect("non-empty bucket");
            queue.len -= 1;
            inner.queued.fetch_sub(1, Ordering::SeqCst);
            let expired = entry
                .request
                .deadline
                .is_some_and(|d| d.saturating_duration_since(now) <= service);
            if expired {
                self.settle(&entry, SlotState::Refused(Reason::Expired));
                continue;
            }
            return Some(entry);
        }
    }

    /// Hands free slots to waiters, if any wait.
    fn hand_on(&self) {
        let inner = &self.inner;
        if inner.queued.load(Ordering::SeqCst) > 0 {
            let now = inner.clock.now();
            let mut queue = inner.queue.lock();
            self.dispatch(&mut queue, now);
        }
    }

    /// Frees one slot of `class` and hands it on if anyone waits.
    fn release(&self, class: usize) {
        let inner = &self.inner;
        inner.class_in_flight[class].fetch_sub(1, Ordering::AcqRel);
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.hand_on();
    }

    /// Folds one service time into the estimate (an exponential average, 1/8).
    fn service(&self, rtt: Duration) {
        let inner = &self.inner;
        let ns = rtt.as_nanos().min(u128::from(u64::MAX)) as u64;
        let old = inner.service_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        inner.service_ns.store(new, Ordering::Relaxed);
    }

    fn sample(&self, sample: Sample) {
        let inner = &self.inner;
        let Some(mut algorithm) = inner.algorithm.try_lock() else {
            return;
        };
        let limit = algorithm.update(sample).max(1);
        drop(algorithm);
        let old = inner.limit.swap(limit, Ordering::AcqRel);
        if limit != old {
            tracing::debug!(old, new = limit, "admission limit moved");
            if limit > old {
                self.hand_on();
            }
        }
    }

    /// The longest `request` may wait from now, and the reason it is refused
    /// with if it waits that long.
    fn wait_bound(&self, request: &Request, overloaded: bool) -> (Duration, Reason) {
        let config = &self.inner.config;
        let mut bound = config.max_wait;
        if overloaded {
            bound = bound.min(config.target);
        }
        let mut reason = Reason::TimedOut;
        if let Some(deadline) = request.deadline {
            let remaining = deadline.saturating_duration_since(self.inner.clock.now());
            let usable = remaining.saturating_sub(self.service_time());
            if usable < bound {
                bound = usable;
                reason = Reason::Deadline;
            }
        }
        (bound, reason)
    }
}

impl<C: Clock> Inner<C> {
    /// One more in flight if below the limit.
    #[inline]
    fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

/// An admission controller's counters at one moment.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionSnapshot {
    /// The limit.
    pub limit: u32,
    /// Requests admitted and not finished.
    pub in_flight: u32,
    /// Requests waiting.
    pub queued: u32,
    /// Requests admitted since creation, by class (critical, default, sheddable).
    pub admitted: [u64; 3],
    /// Requests refused since creation, by class and [`Reason`] (in
    /// [`Reason::ALL`] order).
    pub refused: [[u64; 6]; 3],
}

impl AdmissionSnapshot {
    /// Admitted requests of a class.
    pub fn admitted(&self, class: Criticality) -> u64 {
        self.admitted[class.index()]
    }

    /// Refused requests of a class for a reason.
    pub fn refused(&self, class: Criticality, reason: Reason) -> u64 {
        self.refused[class.index()][reason.index()]
    }
}

enum AdmitState<S> {
    Start,
    Queued {
        slot: Arc<Slot>,
        sleep: Pin<Box<S>>,
        reason: Reason,
    },
    Done,
}

/// The future of [`AdmissionController::acquire`]: admitted, or refused.
///
/// Dropping it leaves the queue at once (a slot granted at that moment is handed
/// on).
#[must_use = "futures do nothing unless polled"]
pub struct Admit<C: Clock = DefaultClock> {
    controller: AdmissionController<C>,
    request: Request,
    state: AdmitState<C::Sleep>,
}

impl<C: Clock> fmt::Debug for Admit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admit")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Unpin for Admit<C> {}

impl<C: Clock> Future for Admit<C> {
    type Output = Result<AdmissionPermit<C>, Refused>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let controller = &this.controller;
        if let AdmitState::Start = this.state {
            if let Some(e) = controller.unmeetable(&this.request) {
                this.state = AdmitState::Done;
                return Poll::Ready(Err(e));
            }
            if controller.inner.queued.load(Ordering::SeqCst) == 0 && controller.inner.try_take() {
                this.state = AdmitState::Done;
                return Poll::Ready(Ok(controller.permit(this.request)));
            }
            let overloaded = controller.inner.queue.lock().overloaded;
            let (bound, reason) = controller.wait_bound(&this.request, overloaded);
            match controller.enqueue(this.request) {
                Err(e) => {
                    this.state = AdmitState::Done;
                    return Poll::Ready(Err(e));
                }
                Ok(None) => {
                    this.state = AdmitState::Done;
                    return Poll::Ready(Ok(controller.permit(this.request)));
                }
                Ok(Some(slot)) => {
                    let sleep = Box::pin(controller.inner.clock.sleep(bound));
                    this.state = AdmitState::Queued {
                        slot,
                        sleep,
                        reason,
                    };
                }
            }
        }
        let AdmitState::Queued {
            slot,
            sleep,
            reason,
        } = &mut this.state
        else {
            panic!("an admission polled after it completed");
        };
        {
            let mut state = slot.state.lock();
            match &mut *state {
                SlotState::Granted => {
                    drop(state);
                    this.state = AdmitState::Done;
                    return Poll::Ready(Ok(controller.permit(this.request)));
                }
                SlotState::Refused(r) => {
                    let r = *r;
                    drop(state);
                    this.state = AdmitState::Done;
                    return Poll::Ready(Err(controller.refused_error(&this.request, r)));
                }
                SlotState::Waiting(waker) => match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                },
            }
        }
        if sleep.as_mut().poll(cx).is_ready() {
            let reason = *reason;
            let state = std::mem::replace(&mut this.state, AdmitState::Done);
            let AdmitState::Queued { slot, .. } = state else {
                unreachable!("matched above")
            };
            let mut queue = controller.inner.queue.lock();
            if queue.remove(&slot, this.request.rank()) {
                controller.inner.queued.fetch_sub(1, Ordering::SeqCst);
                drop(queue);
                return Poll::Ready(Err(controller.refuse(&this.request, reason)));
            }
            drop(queue);
            // Answered at the last moment: the answer wins over the timeout.
            let answer = std::mem::replace(&mut *slot.state.lock(), SlotState::Granted);
            return Poll::Ready(match answer {
                SlotState::Refused(r) => Err(controller.refused_error(&this.request, r)),
                _ => Ok(controller.permit(this.request)),
            });
        }
        Poll::Pending
    }
}

impl<C: Clock> Drop for Admit<C> {
    fn drop(&mut self) {
        let AdmitState::Queued { slot, .. } = &self.state else {
            return;
        };
        let controller = &self.controller;
        let mut queue = controller.inner.queue.lock();
        if queue.remove(slot, self.request.rank()) {
            controller.inner.queued.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        drop(queue);
        if matches!(*slot.state.lock(), SlotState::Granted) {
            // Granted and never taken: the slot (counted in flight, not yet in a
            // class) goes to the next waiter.
            controller.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
            controller.hand_on();
        }
    }
}

/// One admitted request's slot; report how it ended.
///
/// Dropping it without a report frees the slot and adds no sample.
#[must_use = "report how the request ended, or the limit learns nothing from it"]
pub struct AdmissionPermit<C: Clock = DefaultClock> {
    controller: AdmissionController<C>,
    class: usize,
    start: Timestamp,
    in_flight: u32,
    done: bool,
}

impl<C: Clock> fmt::Debug for AdmissionPermit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionPermit")
            .field("criticality", &Criticality::ALL[self.class])
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> AdmissionPermit<C> {
    fn finish(mut self, dropped: Option<bool>) {
        self.done = true;
        let rtt = self.controller.inner.clock.now() - self.start;
        if dropped == Some(false) {
            // Before the slot is handed on, so that the next waiter is judged
            // against the latest service time.
            self.controller.service(rtt);
        }
        self.controller.release(self.class);
        if let Some(dropped) = dropped {
            self.controller.sample(Sample {
                rtt,
                in_flight: self.in_flight,
                dropped,
            });
        }
    }

    /// The request was served (or failed in a way that says nothing of load).
    pub fn success(self) {
        self.finish(Some(false))
    }

    /// The request failed from overload (it timed out, or a dependency refused it).
    pub fn dropped(self) {
        self.finish(Some(true))
    }

    /// No sample.
    pub fn ignore(self) {
        self.finish(None)
    }

    /// Reports by outcome, as [`AdaptivePermit::record`](crate::AdaptivePermit::record).
    pub fn record(self, outcome: &Outcome) {
        match outcome {
            Outcome::Success | Outcome::Permanent => self.success(),
            Outcome::Transient(_) => self.dropped(),
            _ => self.ignore(),
        }
    }

    /// The request's class.
    pub fn criticality(&self) -> Criticality {
        Criticality::ALL[self.class]
    }

    /// When it was admitted.
    pub fn start(&self) -> Timestamp {
        self.start
    }
}

impl<C: Clock> Drop for AdmissionPermit<C> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.controller.release(self.class);
        }
    }
}
