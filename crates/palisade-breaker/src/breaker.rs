//! The breaker: the state word, the transitions and the permits' bookkeeping.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use palisade_classify::{AnyErrorIsTransient, Classify, Outcome, OutcomeKind};
use palisade_clock::{Clock, DefaultClock, Timestamp};

use crate::call::Call;
use crate::config::{BreakerConfig, ConfigError};
use crate::error::{CallError, Rejected};
use crate::event::{Reason, Transition, trace};
use crate::permit::{OwnedPermit, Permit, Ticket};
use crate::snapshot::{BreakerSnapshot, Opening};
use crate::state::{AtomicWord, State, Word};
use crate::sync::{
    Arc, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering, broken_half_open, broken_keep_busy,
    broken_trip,
};
use crate::window::ClosedWindow;

/// A subscriber to transitions.
pub(crate) type Hook = Box<dyn Fn(&Transition) + Send + Sync>;

/// A circuit breaker.
///
/// Cheap to clone: clones share one breaker. See the [crate docs](crate) for the
/// states, the rules and an example.
pub struct Breaker<C: Clock = DefaultClock> {
    pub(crate) inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for Breaker<C> {
    fn clone(&self) -> Self {
        Breaker {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C: Clock> fmt::Debug for Breaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.inner.word.load(Ordering::Relaxed);
        f.debug_struct("Breaker")
            .field("name", &self.inner.name)
            .field("state", &word.state())
            .field("generation", &word.generation())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Breaker`] with a name, a clock and transition subscribers.
pub struct BreakerBuilder<C: Clock = DefaultClock> {
    config: BreakerConfig,
    clock: C,
    name: String,
    hooks: Vec<Hook>,
}

impl<C: Clock> fmt::Debug for BreakerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("name", &self.name)
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl<C: Clock> BreakerBuilder<C> {
    /// Reads time from `clock` (a [`ManualClock`](palisade_clock::ManualClock) in
    /// tests) instead of the default.
    pub fn clock<C2: Clock>(self, clock: C2) -> BreakerBuilder<C2> {
        BreakerBuilder {
            config: self.config,
            clock,
            name: self.name,
            hooks: self.hooks,
        }
    }

    /// The name tracing events carry (`breaker = "..."`); empty by default.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Calls `hook` on every transition, after the breaker's lock is released (so
    /// the hook may call the breaker). Hooks of concurrent transitions may run out of
    /// order; [`Transition::generation`] orders them. A hook that panics is caught
    /// and logged (tracing ERROR on `palisade::breaker`): the breaker's state, the
    /// permit of the call that made the transition and the other hooks are not
    /// affected.
    pub fn on_transition(mut self, hook: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Validates the configuration and builds the breaker, closed.
    pub fn build(self) -> Result<Breaker<C>, ConfigError> {
        self.config.validate()?;
        let slow = self.config.slow_call.map(|s| s.duration);
        let now = self.clock.now();
        let rules = Rules::default();
        rules.store(&self.config);
        let window = ClosedWindow::new(self.config.window, slow, self.clock.clone())?;
        let inner = |#[cfg(not(loom))] me: &std::sync::Weak<Inner<C>>| Inner {
            #[cfg(not(loom))]
            me: me.clone(),
            word: AtomicWord::new(Word::initial(self.config.metrics_only, slow.is_some())),
            retry_at: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            probes_busy: AtomicU64::new(NOT_BUSY),
            probes_busy_until: AtomicU64::new(0),
            slow_threshold: slow,
            window,
            rules,
            state_since: AtomicU64::new(now.as_nanos()),
            control: Padded(Mutex::new(Control {
                config: self.config,
                reopenings: 0,
                probes: Vec::new(),
                probe_successes: 0,
                probe_failures: 0,
                next_lease: 0,
                delays: None,
                last_open: Duration::ZERO,
                open_until: None,
                last_opening: None,
                #[cfg(not(loom))]
                timer: None,
            })),
            clock: self.clock,
            name: self.name.into_boxed_str(),
            hooks: self.hooks.into_boxed_slice(),
        };
        #[cfg(not(loom))]
        let inner = Arc::new_cyclic(inner);
        #[cfg(loom)]
        let inner = Arc::new(inner());
        Ok(Breaker { inner })
    }
}

/// Aligned to two cache lines (the prefetcher pulls lines in pairs), so that the
/// `Arc`'s reference counts, written when handles are cloned, do not share a line
/// with the state word every call reads.
#[repr(align(128))]
pub(crate) struct Inner<C: Clock> {
    /// A handle to itself for the open-state timer, which must not keep the
    /// breaker alive.
    #[cfg(not(loom))]
    me: std::sync::Weak<Inner<C>>,
    /// The state word (see [`Word`] for its bits); changed only under `control`.
    word: AtomicWord,
    /// When the open state ends, in clock nanoseconds; stored before the word.
    retry_at: AtomicU64,
    consecutive: AtomicU32,
    /// The generation of a half-open state whose probe slots are all taken (or
    /// `NOT_BUSY`), and when its first lease expires: calls until then are
    /// rejected without the lock. Set and cleared under the lock.
    probes_busy: AtomicU64,
    probes_busy_until: AtomicU64,
    /// The slow-call duration, when the slow-call rule is on: calls are timed only
    /// then.
    slow_threshold: Option<Duration>,
    window: ClosedWindow<C>,
    rules: Rules,
    state_since: AtomicU64,
    /// On lines of its own: locked by transitions and probes, never by a call in
    /// the closed or open state.
    control: Padded<Mutex<Control>>,
    clock: C,
    name: Box<str>,
    hooks: Box<[Hook]>,
}

/// A value on cache lines of its own.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The closed state's thresholds, readable without the lock and changeable live.
#[derive(Debug, Default)]
struct Rules {
    /// `f64` bits of the percentage; `OFF` when the rule is off.
    failure_rate: AtomicU64,
    slow_rate: AtomicU64,
    minimum_calls: AtomicU32,
    /// 0 when the rule is off.
    consecutive: AtomicU32,
}

const OFF: u64 = u64::MAX;
const NOT_BUSY: u64 = u64::MAX;

impl Rules {
    fn store(&self, config: &BreakerConfig) {
        let bits = |p: Option<f64>| p.map_or(OFF, f64::to_bits);
        self.failure_rate
            .store(bits(config.failure_rate_threshold), Ordering::Relaxed);
        self.slow_rate.store(
            bits(config.slow_call.map(|s| s.rate_threshold)),
            Ordering::Relaxed,
        );
        self.minimum_calls
            .store(config.minimum_calls, Ordering::Relaxed);
        self.consecutive
            .store(config.consecutive_failures.unwrap_or(0), Ordering::Relaxed);
    }
}

/// Whether `part` out of `whole` reaches `percent` (with a little slack for the
/// rounding of the percentage itself: 10 % of 10 calls is 1 call).
#[inline]
pub(crate) fn reaches(part: u64, whole: u64, percent: f64) -> bool {
    whole > 0 && part as f64 * 100.0 >= percent * whole as f64 - 1e-9 * whole as f64
}

/// `part / whole` in percent, 0 for an empty whole.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// How many failed probes out of `probes` reach `percent`.
pub(crate) fn failures_to_reopen(percent: f64, probes: u32) -> u32 {
    (1..=probes)
        .find(|&f| reaches(u64::from(f), u64::from(probes), percent))
        .unwrap_or(probes)
}

struct Control {
    config: BreakerConfig,
    /// Openings since the last clean close: picks the next open duration.
    reopenings: u32,
    /// The half-open probe slots of the current half-open state.
    probes: Vec<Option<Lease>>,
    probe_successes: u32,
    probe_failures: u32,
    next_lease: u64,
    /// The delays of an open-duration schedule since the last clean close, and the
    /// last one drawn (repeated once the schedule ends).
    delays: Option<palisade_backoff::Delays>,
    last_open: Duration,
    /// The end of the next opening, when an operator chose it
    /// ([`Breaker::open_until`]): taken by that opening.
    open_until: Option<Timestamp>,
    /// The last opening, with the window's figures then.
    last_opening: Option<Opening>,
    /// The task that moves the open state on, with `OpenTransition::Timer`.
    #[cfg(not(loom))]
    timer: Option<Timer>,
}

/// Aborts the open-state timer task when dropped: on every transition and when the
/// breaker itself is dropped, so no task outlives what it was for.
#[cfg(not(loom))]
struct Timer(tokio::task::AbortHandle);

#[cfg(not(loom))]
impl Drop for Timer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Copy, Clone, Debug)]
struct Lease {
    id: u64,
    started: Timestamp,
}

/// Transitions to report once the lock is released.
type Events = Option<Transition>;

impl Breaker {
    /// A breaker on the default clock, closed; the configuration is validated.
    ///
    /// ```
    /// use palisade_breaker::{Breaker, BreakerConfig};
    ///
    /// let breaker = Breaker::new(BreakerConfig::default()).unwrap();
    /// assert!(breaker.try_acquire().is_ok());
    /// ```
    pub fn new(config: BreakerConfig) -> Result<Breaker, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder, for a name, a clock or transition subscribers.
    pub fn builder(config: BreakerConfig) -> BreakerBuilder {
        BreakerBuilder {
            config,
            clock: DefaultClock::default(),
            name: String::new(),
            hooks: Vec::new(),
        }
    }
}

impl<C: Clock> Breaker<C> {
    /// Asks to run one call. On success, run the call and hand its outcome to
    /// [`Permit::record`]; dropping the permit instead records nothing (a cancelled
    /// call is never a success) and frees its probe slot.
    ///
    /// In the closed state this is one atomic load; in the open state one more load
    /// and a coarse clock reading ([`Clock::recent`]).
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_, C>, Rejected> {
        let ticket = self.inner.acquire()?;
        Ok(Permit::new(&self.inner, ticket))
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a handle to
    /// the breaker, for calls that outlive the borrow (spawned tasks, services).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit<C>, Rejected> {
        let ticket = self.inner.acquire()?;
        Ok(OwnedPermit::new(Arc::clone(&self.inner), ticket))
    }

    /// Runs `fut` if the breaker admits it; counts an `Ok` as a success and an `Err`
    /// as a failure ([`AnyErrorIsTransient`]). The breaker is asked when the
    /// returned future is first polled; if it is dropped before `fut` completes,
    /// nothing is counted. A panic in `fut` counts as a failure and goes on to the
    /// caller.
    #[inline]
    pub fn call<F, T, E>(&self, fut: F) -> Call<'_, C, AnyErrorIsTransient, F>
    where
        F: Future<Output = Result<T, E>>,
    {
        Call::new(&self.inner, &AnyErrorIsTransient, fut)
    }

    /// Runs `fut` if the breaker admits it and counts the outcome `classifier`
    /// gives its result. The breaker is asked when the returned future is first
    /// polled; if it is dropped before `fut` completes, nothing is counted. A panic
    /// in `fut` counts as a failure and goes on to the caller.
    ///
    /// ```
    /// use palisade_breaker::{Breaker, BreakerConfig};
    /// use palisade_classify::{AnyErrorIsTransient, ClassifyExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::default()).unwrap();
    /// // A "not found" is the caller's business, not the dependency's failure.
    /// let classifier = AnyErrorIsTransient.ignore_err(|e: &&str| *e == "not found");
    /// let result = breaker.call_with(&classifier, async { Err::<u32, _>("not found") }).await;
    /// assert!(!result.unwrap_err().is_rejected());
    /// assert_eq!(breaker.snapshot().calls, 0);
    /// # }
    /// ```
    #[inline]
    pub fn call_with<'a, K, F, T, E>(&'a self, classifier: &'a K, fut: F) -> Call<'a, C, K, F>
    where
        K: Classify<T, E> + ?Sized,
        F: Future<Output = Result<T, E>>,
    {
        Call::new(&self.inner, classifier, fut)
    }

    /// Runs `f` on this thread if the breaker admits it, counting `Ok` as a success
    /// and `Err` as a failure. For code that is not async. A panic in `f` counts as
    /// a failure and is then resumed.
    pub fn call_sync<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, CallError<E>> {
        self.call_sync_with(&AnyErrorIsTransient, f)
    }

    /// Runs `f` on this thread if the breaker admits it, counting the outcome
    /// `classifier` gives its result. A panic in `f` counts as a failure and is
    /// then resumed.
    pub fn call_sync_with<K, T, E>(
        &self,
        classifier: &K,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, CallError<E>>
    where
        K: Classify<T, E> + ?Sized,
    {
        let permit = self.try_acquire().map_err(CallError::Rejected)?;
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(panic) => {
                // A panic is the dependency's failure too; the caller still gets it.
                permit.record(Outcome::transient());
                std::panic::resume_unwind(panic);
            }
        };
        permit.record(classifier.classify(&result));
        result.map_err(CallError::Inner)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.word.load(Ordering::Acquire).state()
    }

    /// Why and when the breaker last opened, with the window's figures at that
    /// moment; `None` if it never opened. A [`Rejected`] carries the reason alone
    /// ([`Rejected::opened_by`]), so that a rejection costs nothing more.
    pub fn last_opening(&self) -> Option<Opening> {
        self.inner.control.lock().last_opening
    }

    /// State, counters, rates and time in state, read together.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.inner.snapshot()
    }

    /// The breaker's name, as given to [`BreakerBuilder::name`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bytes this breaker occupies, fixed at construction (the window is most
    /// of it), not counting the probe slots of a half-open state or the name.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Inner<C>>() + self.inner.window.memory_bytes()
    }

    /// The clock the breaker reads.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// The configuration in force.
    pub fn config(&self) -> BreakerConfig {
        self.inner.control.lock().config.clone()
    }

    /// Holds the breaker open: every call is rejected until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.inner.force(State::ForcedOpen, Reason::ForcedOpen);
    }

    /// Opens the breaker for `duration` from now: calls are rejected with the time
    /// left until then, after which the breaker goes half-open as after any
    /// opening (with [`OpenTransition::Timer`](crate::OpenTransition::Timer), by
    /// its timer), and its probes decide. See [`open_until`](Self::open_until).
    pub fn open_for(&self, duration: Duration) {
        let until = self.inner.clock.now().saturating_add(duration);
        self.inner.open_until(until);
    }

    /// Opens the breaker until `until` on its clock, then half-open as after any
    /// opening: the probes find out whether the dependency is back (call
    /// [`reset`](Self::reset) to close it without them).
    ///
    /// Reported as a transition to [`State::Open`] with reason
    /// [`Reason::OpenedFor`]; on a breaker already open it replaces the end of the
    /// open state silently (the state does not change). The open-duration
    /// schedule does not move on: the next opening by the rules takes the
    /// duration it would have taken. An instant already past opens the breaker
    /// until the next call (or its timer) moves it to half-open.
    pub fn open_until(&self, until: Timestamp) {
        self.inner.open_until(until);
    }

    /// Holds the breaker closed: every call passes and is counted (the snapshot
    /// shows the rates), and nothing trips until [`reset`](Self::reset).
    pub fn force_closed(&self) {
        self.inner.force(State::ForcedClosed, Reason::ForcedClosed);
    }

    /// Turns the breaker off: every call passes and nothing is counted until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.inner.force(State::Disabled, Reason::Disabled);
    }

    /// Back to a clean closed state: counters emptied, the open duration back to its
    /// first value, outcomes of calls admitted before dropped. Resetting a breaker
    /// that is already closed does all that but reports no transition (no event,
    /// no subscriber call): its state does not change.
    pub fn reset(&self) {
        self.inner.force(State::Closed, Reason::Reset);
    }

    /// Applies a changed configuration to the live breaker, keeping its state and
    /// counters: thresholds, minimum calls and the consecutive-failures limit apply
    /// to the next outcome; the open durations to the next opening (the current
    /// open state keeps its end); the half-open settings to the next half-open
    /// state; metrics-only at once.
    ///
    /// The window's shape (its kind, size, buckets and the slow-call duration) cannot
    /// change on a live breaker: that is an error naming `window` or
    /// `slow_call.duration`, and the caller builds a new breaker.
    pub fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        self.inner.reconfigure(config)
    }
}

impl<C: Clock> Inner<C> {
    #[inline(always)]
    pub(crate) fn acquire(&self) -> Result<Ticket, Rejected> {
        let word = self.word.load(Ordering::Acquire);
        if word.is_fast() {
            // Closed, calls untimed: the word is the whole ticket.
            return Ok(Ticket::Fast { word });
        }
        self.acquire_not_fast(word)
    }

    /// The state word, for a caller that tries [`Word::is_fast`] itself before
    /// [`acquire_not_fast`](Self::acquire_not_fast).
    #[inline(always)]
    pub(crate) fn load_word(&self) -> Word {
        self.word.load(Ordering::Acquire)
    }

    /// [`acquire`](Self::acquire) past the fast path, with the word it read.
    #[inline(always)]
    pub(crate) fn acquire_not_fast(&self, word: Word) -> Result<Ticket, Rejected> {
        if word.is(State::Open) {
            // No lock and no exact clock reading while open: the coarse reading only
            // decides whether to look closer.
            let retry_at = self.retry_at.load(Ordering::Acquire);
            let now = self.clock.recent().as_nanos();
            if now < retry_at {
                return if word.metrics_only() {
                    Ok(Ticket::Shadow {
                        generation: word.generation(),
                        started: now,
                    })
                } else {
                    Err(Rejected::open(word, retry_at - now))
                };
            }
        }
        if word.is(State::Closed) {
            // Closed, calls timed: the coarse time the call starts.
            return Ok(Ticket::Closed {
                generation: word.generation(),
                started: self.clock.recent().as_nanos(),
            });
        }
        self.acquire_slow(word)
    }

    #[inline]
    fn start(&self) -> u64 {
        if self.slow_threshold.is_some() {
            self.clock.recent().as_nanos()
        } else {
            0
        }
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self, seen: Word) -> Result<Ticket, Rejected> {
        if seen.is(State::HalfOpen)
            && !seen.metrics_only()
            && self.probes_busy.load(Ordering::Acquire) == seen.generation()
        {
            let now = self.clock.recent().as_nanos();
            let until = self.probes_busy_until.load(Ordering::Relaxed);
            if now < until {
                // Every probe slot is taken and no lease has run out yet: no need
                // for the lock to say no.
                return Err(Rejected::new(seen, Some(Duration::from_nanos(until - now))));
            }
        }
        let mut ctl = self.control.lock();
        // Read again under the lock: another call may have moved the state on.
        let word = if broken_half_open() {
            seen
        } else {
            self.word.load(Ordering::Acquire)
        };
        let metrics_only = word.metrics_only();
        let mut event = None;
        let result = match word.state() {
            State::Closed | State::ForcedClosed => Ok(Ticket::Closed {
                generation: word.generation(),
                started: self.start(),
            }),
            State::Disabled => Ok(Ticket::Untracked),
            State::ForcedOpen if metrics_only => Ok(Ticket::Shadow {
                generation: word.generation(),
                started: self.start(),
            }),
            State::ForcedOpen => Err(Rejected::new(word, None)),
            State::Open => {
                let now = self.clock.now();
                let retry_at = self.retry_at.load(Ordering::Acquire);
                if now.as_nanos() < retry_at {
                    if metrics_only {
                        Ok(Ticket::Shadow {
                            generation: word.generation(),
                            started: self.start(),
                        })
                    } else {
                        Err(Rejected::new(
                            word,
                            Some(Duration::from_nanos(retry_at - now.as_nanos())),
                        ))
                    }
                } else {
                    event = self.transition(
                        &mut ctl,
                        word,
                        State::HalfOpen,
                        Reason::OpenDurationElapsed,
                        now,
                    );
                    self.probe(&mut ctl, now, metrics_only)
                }
            }
            State::HalfOpen => {
                let now = self.clock.now();
                self.probe(&mut ctl, now, metrics_only)
            }
        };
        drop(ctl);
        self.emit(event);
        result
    }

    /// Admits a half-open probe if a slot is free and more outcomes are needed.
    fn probe(
        &self,
        ctl: &mut MutexGuard<'_, Control>,
        now: Timestamp,
        metrics_only: bool,
    ) -> Result<Ticket, Rejected> {
        let wait = ctl.config.half_open.max_probe_wait;
        let mut in_flight = 0u32;
        let mut free = None;
        for (i, slot) in ctl.probes.iter_mut().enumerate() {
            match slot {
                Some(lease) if now.saturating_duration_since(lease.started) >= wait => {
                    // A lost probe: its lease ran out; its outcome will be dropped.
                    *slot = None;
                    tracing::debug!(
                        target: "palisade::breaker",
                        breaker = &*self.name,
                        "half-open probe lease expired"
                    );
                    free.get_or_insert(i);
                }
                Some(_) => in_flight += 1,
                None => {
                    free.get_or_insert(i);
                }
            }
        }
        let probes = ctl.probes.len() as u32;
        let counted = ctl.probe_successes + ctl.probe_failures;
        let needed = probes.saturating_sub(counted);
        match free {
            Some(slot) if in_flight < needed => {
                let id = ctl.next_lease;
                ctl.next_lease += 1;
                ctl.probes[slot] = Some(Lease { id, started: now });
                Ok(Ticket::Probe {
                    generation: self.word.load(Ordering::Relaxed).generation(),
                    slot: slot as u32,
                    lease: id,
                    started: now.as_nanos(),
                })
            }
            _ if metrics_only => Ok(Ticket::Shadow {
                generation: self.word.load(Ordering::Relaxed).generation(),
                started: now.as_nanos(),
            }),
            _ => {
                // Until a probe ends or its lease runs out, the answer stays no:
                // let calls learn it without the lock.
                let first_expiry = ctl
                    .probes
                    .iter()
                    .flatten()
                    .map(|lease| lease.started.saturating_add(wait))
                    .min();
                let word = self.word.load(Ordering::Relaxed);
                if let Some(until) = first_expiry {
                    self.probes_busy_until
                        .store(until.as_nanos(), Ordering::Relaxed);
                    self.probes_busy.store(word.generation(), Ordering::Release);
                }
                Err(Rejected::new(
                    word,
                    first_expiry.map(|until| until.saturating_duration_since(now)),
                ))
            }
        }
    }

    /// Records the outcome of a permit.
    #[inline(always)]
    pub(crate) fn complete(&self, ticket: Ticket, outcome: Outcome) {
        if let Ticket::Fast { word } = ticket {
            return self.complete_fast(word, outcome);
        }
        self.complete_other(ticket, outcome)
    }

    /// Records the outcome of a call admitted by the fast path under `word`.
    #[inline(always)]
    pub(crate) fn complete_fast(&self, word: Word, outcome: Outcome) {
        let kind = outcome.kind();
        if kind == OutcomeKind::Success && self.word.load(Ordering::Acquire) == word {
            // The healthy call, in the state it was admitted under.
            self.count_healthy();
            return;
        }
        self.complete_fast_other(word, kind)
    }

    /// A fast-path call that failed, was ignored, or ended after the word changed
    /// (a transition, or metrics-only switched).
    #[inline(never)]
    fn complete_fast_other(&self, word: Word, kind: OutcomeKind) {
        // Fast tickets are untimed: there is no start time to pass on.
        self.record_closed(word.generation(), 0, kind);
    }

    #[inline(never)]
    fn complete_other(&self, ticket: Ticket, outcome: Outcome) {
        match ticket {
            Ticket::Closed {
                generation,
                started,
            } => self.record_closed(generation, started, outcome.kind()),
            Ticket::Probe {
                generation,
                slot,
                lease,
                started,
            } => self.finish_probe(generation, slot, lease, started, Some(outcome)),
            Ticket::Shadow {
                generation,
                started,
            } => self.record_shadow(generation, started, outcome.kind()),
            Ticket::Fast { .. } | Ticket::Untracked | Ticket::Unpolled | Ticket::Done => {}
        }
    }

    /// Counts, in metrics-only mode, a call the breaker would have rejected: the
    /// window keeps its figures through the outage it would have caused, and no
    /// rule is applied (the breaker is not closed). An outcome from an earlier
    /// state is dropped, as in the closed state.
    #[cold]
    fn record_shadow(&self, gen_: u64, started: u64, kind: OutcomeKind) {
        if kind != OutcomeKind::Ignored && self.word.load(Ordering::Acquire).generation() == gen_ {
            self.window.record(kind, self.timed(started));
        }
    }

    /// Counts a call whose future panicked as a failure.
    #[cold]
    #[inline(never)]
    pub(crate) fn panicked(&self, ticket: Ticket) {
        self.complete(ticket, Outcome::transient());
    }

    /// Frees the slot of a probe dropped without an outcome.
    #[cold]
    pub(crate) fn abandon(&self, ticket: Ticket) {
        if let Ticket::Probe {
            generation,
            slot,
            lease,
            started,
        } = ticket
        {
            self.finish_probe(generation, slot, lease, started, None);
        }
    }

    /// The call's duration and the time it ended, when calls are timed.
    #[inline]
    fn timed(&self, started: u64) -> Option<(Duration, Timestamp)> {
        self.slow_threshold.map(|_| {
            let now = self.clock.recent();
            (
                Duration::from_nanos(now.as_nanos().saturating_sub(started)),
                now,
            )
        })
    }

    #[inline]
    fn record_closed(&self, gen_: u64, started: u64, kind: OutcomeKind) {
        let word = self.word.load(Ordering::Acquire);
        if word.generation() != gen_ || kind == OutcomeKind::Ignored {
            // Not counted, or admitted under an earlier state: not evidence about
            // this one.
            return;
        }
        if kind == OutcomeKind::Success && word.is_fast() {
            self.count_healthy();
            return;
        }
        self.record_closed_slow(word, started, kind);
    }

    /// Counts an untimed success in the closed state and ends the run of failures,
    /// if there is one (written only then, so that healthy calls on many threads
    /// leave its cache line shared).
    #[inline(always)]
    fn count_healthy(&self) {
        self.window.record_untimed(OutcomeKind::Success);
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Failures, timed calls and the forced-closed state.
    #[inline(never)]
    fn record_closed_slow(&self, word: Word, started: u64, kind: OutcomeKind) {
        let timed = self.timed(started);
        self.window.record(kind, timed);
        if !word.is(State::Closed) {
            // Forced closed: counted, never tripped.
            return;
        }
        if kind == OutcomeKind::Success {
            if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
            if self.is_slow(timed) {
                self.evaluate(word);
            }
        } else {
            let run = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
            let limit = self.rules.consecutive.load(Ordering::Relaxed);
            if limit != 0 && run >= limit {
                self.trip(word, Reason::ConsecutiveFailures);
            } else {
                self.evaluate(word);
            }
        }
    }

    #[inline]
    fn is_slow(&self, timed: Option<(Duration, Timestamp)>) -> bool {
        matches!((self.slow_threshold, timed), (Some(t), Some((e, _))) if e >= t)
    }

    /// Applies the rate rules to the window after a failure or a slow call.
    fn evaluate(&self, word: Word) {
        let counts = self.window.counts();
        if counts.calls < u64::from(self.rules.minimum_calls.load(Ordering::Relaxed)) {
            return;
        }
        let failure_rate = self.rules.failure_rate.load(Ordering::Relaxed);
        if failure_rate != OFF
            && reaches(counts.failures, counts.calls, f64::from_bits(failure_rate))
        {
            self.trip(word, Reason::FailureRate);
            return;
        }
        let slow_rate = self.rules.slow_rate.load(Ordering::Relaxed);
        if slow_rate != OFF && reaches(counts.slow_calls, counts.calls, f64::from_bits(slow_rate)) {
            self.trip(word, Reason::SlowCallRate);
        }
    }

    /// Opens the breaker if it is still in the closed state `seen`.
    #[cold]
    fn trip(&self, seen: Word, reason: Reason) {
        let mut ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        if (word.generation() != seen.generation() || !word.is(State::Closed)) && !broken_trip() {
            // Another call already moved it on: open once only.
            return;
        }
        let now = self.clock.now();
        let event = self.transition(&mut ctl, word, State::Open, reason, now);
        drop(ctl);
        self.emit(event);
    }

    #[cold]
    fn finish_probe(
        &self,
        gen_: u64,
        slot: u32,
        lease: u64,
        started: u64,
        outcome: Option<Outcome>,
    ) {
        let mut ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        if word.generation() != gen_ {
            return;
        }
        match ctl.probes.get(slot as usize) {
            Some(Some(l)) if l.id == lease => {}
            // The lease expired and the slot went to another probe.
            _ => return,
        }
        ctl.probes[slot as usize] = None;
        if !broken_keep_busy() {
            self.probes_busy.store(NOT_BUSY, Ordering::Release);
        }
        let timed = self.timed(started);
        let (failed, kind) = match outcome.map(|o| o.kind()) {
            Some(OutcomeKind::Failure) => (true, OutcomeKind::Failure),
            Some(OutcomeKind::Success) => (self.is_slow(timed), OutcomeKind::Success),
            // Dropped or ignored (or a kind a later version adds): the slot is free,
            // nothing is counted.
            _ => return,
        };
        if word.metrics_only() {
            // Metrics-only: every call reaches the window, probes too.
            self.window.record(kind, timed);
        }
        if failed {
            ctl.probe_failures += 1;
        } else {
            ctl.probe_successes += 1;
        }
        let probes = ctl.probes.len() as u32;
        let to_reopen = failures_to_reopen(ctl.config.half_open.failure_rate_threshold, probes);
        let event = if ctl.probe_failures >= to_reopen {
            let now = self.clock.now();
            self.transition(&mut ctl, word, State::Open, Reason::ProbesFailed, now)
        } else if ctl.probe_successes > probes - to_reopen {
            let now = self.clock.now();
            self.transition(&mut ctl, word, State::Closed, Reason::ProbesSucceeded, now)
        } else {
            None
        };
        drop(ctl);
        self.emit(event);
    }

    /// Moves to state `to`, in a new generation; the caller holds the lock and has
    /// read `word` under it. The transition to report, none when the state stays
    /// the same (a reset of a closed breaker): that starts a new generation
    /// silently.
    fn transition(
        &self,
        ctl: &mut MutexGuard<'_, Control>,
        word: Word,
        to: State,
        reason: Reason,
        now: Timestamp,
    ) -> Events {
        let from = word.state();
        let next = word.next(to, reason);
        let next_gen = next.generation();
        #[cfg(not(loom))]
        drop(ctl.timer.take());
        self.probes_busy.store(NOT_BUSY, Ordering::Release);
        ctl.probes.clear();
        ctl.probe_successes = 0;
        ctl.probe_failures = 0;
        match to {
            State::Open => {
                let retry_at = match ctl.open_until.take() {
                    // Chosen by an operator: the schedule does not move on.
                    Some(until) => until,
                    None => {
                        let open_for = match ctl.config.open {
                            crate::config::OpenDuration::Schedule(backoff) => {
                                let next = ctl.delays.get_or_insert_with(|| backoff.iter()).next();
                                let open_for = next.unwrap_or(ctl.last_open);
                                ctl.last_open = open_for;
                                open_for
                            }
                            open => open.nth(ctl.reopenings),
                        };
                        ctl.reopenings = ctl.reopenings.saturating_add(1);
                        now.saturating_add(open_for)
                    }
                };
                // Below `u64::MAX`, so that the time left, `retry_at - now`, never
                // reads as "no hint" (see `Rejected::open`).
                self.retry_at
                    .store(retry_at.as_nanos().min(u64::MAX - 1), Ordering::Release);
                #[cfg(not(loom))]
                if ctl.config.open_transition == crate::config::OpenTransition::Timer {
                    self.arm_timer(ctl, next_gen, retry_at);
                }
            }
            State::HalfOpen => {
                let probes = ctl.config.half_open.probes as usize;
                ctl.probes.resize(probes, None);
            }
            State::Closed | State::ForcedClosed => {
                ctl.reopenings = 0;
                ctl.delays = None;
                self.window.reset();
                self.consecutive.store(0, Ordering::Relaxed);
            }
            State::ForcedOpen | State::Disabled => {}
        }
        if let State::Open | State::ForcedOpen = to {
            {
                let counts = self.window.counts();
                let rate = |part: u64| percent(part, counts.calls);
                ctl.last_opening = Some(Opening {
                    reason,
                    at: now,
                    generation: next_gen,
                    calls: counts.calls,
                    failures: counts.failures,
                    slow_calls: counts.slow_calls,
                    failure_rate: rate(counts.failures),
                    slow_call_rate: rate(counts.slow_calls),
                    consecutive_failures: self.consecutive.load(Ordering::Relaxed),
                });
            }
        }
        self.state_since.store(now.as_nanos(), Ordering::Relaxed);
        self.word.store(next, Ordering::Release);
        let t = Transition {
            from,
            to,
            generation: next_gen,
            reason,
            at: now,
            metrics_only: word.metrics_only(),
        };
        if t.from == t.to {
            return None;
        }
        trace(&self.name, &t);
        Some(t)
    }

    /// Starts the task that moves the open state `generation` to half-open at
    /// `at`, if there is a tokio runtime to run it on.
    #[cfg(not(loom))]
    fn arm_timer(&self, ctl: &mut Control, generation_: u64, at: Timestamp) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.me.clone();
        let sleep = self.clock.sleep_until(at);
        #[allow(clippy::disallowed_methods)] // the breaker's timer, aborted with the breaker
        let task = runtime.spawn(async move {
            sleep.await;
            if let Some(inner) = me.upgrade() {
                inner.timer_fired(generation_);
            }
        });
        ctl.timer = Some(Timer(task.abort_handle()));
    }

    #[cfg(not(loom))]
    fn timer_fired(&self, generation_: u64) {
        let mut ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        let now = self.clock.now();
        if word.generation() != generation_
            || !word.is(State::Open)
            || now.as_nanos() < self.retry_at.load(Ordering::Acquire)
        {
            return;
        }
        let event = self.transition(
            &mut ctl,
            word,
            State::HalfOpen,
            Reason::OpenDurationElapsed,
            now,
        );
        drop(ctl);
        self.emit(event);
    }

    /// Calls the subscribers, with the state already settled and the lock
    /// released. A subscriber that panics is logged and skipped: its panic cannot
    /// reach the call that made the transition, lose that call's permit, or keep
    /// the other subscribers from hearing of it.
    fn emit(&self, event: Events) {
        if let Some(t) = event {
            for hook in self.hooks.iter() {
                let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&t)));
                if called.is_err() {
                    tracing::error!(
                        target: "palisade::breaker",
                        breaker = &*self.name,
                        from = t.from.as_str(),
                        to = t.to.as_str(),
                        generation = t.generation,
                        "a transition subscriber panicked; its panic is dropped"
                    );
                }
            }
        }
    }

    fn open_until(&self, until: Timestamp) {
        let mut ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        let now = self.clock.now();
        ctl.open_until = Some(until);
        let event = self.transition(&mut ctl, word, State::Open, Reason::OpenedFor, now);
        drop(ctl);
        self.emit(event);
    }

    fn force(&self, to: State, reason: Reason) {
        let mut ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        if word.is(to) && to != State::Closed {
            return;
        }
        let now = self.clock.now();
        let event = self.transition(&mut ctl, word, to, reason, now);
        drop(ctl);
        self.emit(event);
    }

    fn reconfigure(&self, config: BreakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let mut ctl = self.control.lock();
        if config.window != ctl.config.window {
            return Err(ConfigError::new(
                "window",
                config.window,
                format!(
                    "only the live breaker's own {:?}: a window cannot change on a live breaker, build a new breaker",
                    ctl.config.window
                ),
            ));
        }
        let slow = config.slow_call.map(|s| s.duration);
        if slow != self.slow_threshold {
            return Err(ConfigError::new(
                "slow_call.duration",
                slow,
                format!(
                    "only the live breaker's own {:?}: the slow-call duration cannot change on a live breaker, build a new breaker",
                    self.slow_threshold
                ),
            ));
        }
        self.rules.store(&config);
        let word = self.word.load(Ordering::Acquire);
        self.word.store(
            word.with_metrics_only(config.metrics_only),
            Ordering::Release,
        );
        // A changed lease length changes when the busy probes' first lease ends.
        self.probes_busy.store(NOT_BUSY, Ordering::Release);
        if config.open != ctl.config.open {
            // A changed schedule starts from its first delay at the next opening.
            ctl.delays = None;
        }
        ctl.config = config;
        Ok(())
    }

    fn snapshot(&self) -> BreakerSnapshot {
        let ctl = self.control.lock();
        let word = self.word.load(Ordering::Acquire);
        let now = self.clock.now();
        let counts = self.window.counts();
        let rate = |part: u64| percent(part, counts.calls);
        let state = word.state();
        let retry_after = (state == State::Open).then(|| {
            Duration::from_nanos(
                self.retry_at
                    .load(Ordering::Acquire)
                    .saturating_sub(now.as_nanos()),
            )
        });
        BreakerSnapshot {
            state,
            generation: word.generation(),
            metrics_only: word.metrics_only(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow_calls,
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow_calls),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            time_in_state: now.saturating_duration_since(Timestamp::from_nanos(
                self.state_since.load(Ordering::Relaxed),
            )),
            retry_after,
            probes_in_flight: ctl.probes.iter().filter(|p| p.is_some()).count() as u32,
            probe_successes: ctl.probe_successes,
            probe_failures: ctl.probe_failures,
            last_opening: ctl.last_opening,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaches_is_exact_at_round_percentages() {
        assert!(reaches(1, 10, 10.0));
        assert!(!reaches(0, 10, 10.0));
        assert!(reaches(5, 10, 50.0));
        assert!(!reaches(4, 10, 50.0));
        assert!(reaches(1, 3, 33.333_333_333));
        assert!(!reaches(0, 0, 50.0));
        assert!(reaches(3, 3, 100.0));
        assert!(!reaches(2, 3, 100.0));
    }

    #[test]
    fn probes_to_reopen() {
        assert_eq!(failures_to_reopen(50.0, 5), 3);
        assert_eq!(failures_to_reopen(50.0, 1), 1);
        assert_eq!(failures_to_reopen(100.0, 5), 5);
        assert_eq!(failures_to_reopen(10.0, 10), 1);
        assert_eq!(failures_to_reopen(1.0, 10), 1);
    }
}
