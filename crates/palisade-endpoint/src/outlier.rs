//! Outlier detection: per-endpoint statistics, bounded ejection, probation.

use std::fmt;
use std::time::Duration;

use palisade_clock::{Clock, ConfigError, DefaultClock, Timestamp};
use palisade_window::{OutcomeKind, TimeWindow, Window};

use crate::config::OutlierConfig;
use crate::event::{self, EjectReason, Event};
use crate::sync::{Arc, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering};

/// Where an endpoint stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// In rotation.
    Healthy,
    /// Out of rotation until `until`.
    Ejected {
        /// When the ejection ends and probation starts.
        until: Timestamp,
    },
    /// Back in rotation after an ejection; one failure ejects it again, for longer,
    /// and `probation_successes` successes in a row make it healthy.
    Probation,
}

const HEALTHY: u8 = 0;
const EJECTED: u8 = 1;
const PROBATION: u8 = 2;

/// What every call reads and writes without a lock.
pub(crate) struct Health<C: Clock> {
    id: u64,
    label: String,
    /// `HEALTHY`, `EJECTED` or `PROBATION`; changed under the detector's lock.
    mode: AtomicU8,
    consecutive: AtomicU32,
    pub(crate) in_flight: AtomicUsize,
    window: TimeWindow<C>,
}

/// What only changes under the detector's lock.
struct Member<C: Clock> {
    health: Arc<Health<C>>,
    ejections: u32,
    until: Timestamp,
    successes: u32,
}

struct Core<C: Clock> {
    members: Vec<Member<C>>,
    ejected: usize,
}

// A `std` `Arc`: the callback is not part of any loom model (and loom's `Arc`
// does not coerce to a trait object).
type OnEvent = std::sync::Arc<dyn Fn(&Event) + Send + Sync>;

struct Detector<C: Clock> {
    config: OutlierConfig,
    clock: C,
    name: String,
    core: Mutex<Core<C>>,
    /// The earliest end of an ejection (`u64::MAX`: none), so that a call checks
    /// for ends with one load.
    next_expiry: AtomicU64,
    /// When the rate and latency rules are next judged.
    next_eval: AtomicU64,
    next_id: AtomicU64,
    on_event: Option<OnEvent>,
}

/// Outlier detection over a set of endpoints.
///
/// Each endpoint counts its calls in a [`TimeWindow`] and its failures in a row.
/// An endpoint that fails [`consecutive_failures`](OutlierConfig::consecutive_failures)
/// calls in a row is ejected at once; the failure-rate and latency rules (its
/// median against the median of the others') are judged every
/// [`interval`](OutlierConfig::interval), on a call (no task of its own). The n-th
/// ejection in a row lasts `base_ejection × n`, capped at `max_ejection`; when it
/// ends the endpoint is on probation: one failure ejects it again and
/// `probation_successes` successes in a row forgive its ejections. At most
/// [`max_ejected`](OutlierConfig::max_ejected) endpoints are out at once: a
/// dependency-wide outage leaves most endpoints in rotation (that is the breaker's
/// job).
///
/// A healthy call's record is lock-free: the window's record, one load of the
/// endpoint's state, and a store of its failure run only when it was not zero.
///
/// ```
/// use palisade_clock::{Clock, ManualClock};
/// use palisade_endpoint::{EndpointState, OutlierConfig, Outliers};
/// use palisade_window::OutcomeKind;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = OutlierConfig::default().with_consecutive_failures(Some(3));
/// let outliers = Outliers::builder(config).clock(clock.clone()).build().unwrap();
/// let a = outliers.insert("a");
/// let _b = outliers.insert("b");
/// for _ in 0..3 {
///     a.record(OutcomeKind::Failure, None, clock.now());
/// }
/// assert!(matches!(a.state(), EndpointState::Ejected { .. }));
/// clock.advance(Duration::from_secs(30));
/// outliers.tick(clock.now());
/// assert_eq!(a.state(), EndpointState::Probation);
/// ```
pub struct Outliers<C: Clock = DefaultClock> {
    inner: Arc<Detector<C>>,
}

impl<C: Clock> Clone for Outliers<C> {
    fn clone(&self) -> Self {
        Outliers {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for Outliers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.inner.core.lock();
        f.debug_struct("Outliers")
            .field("name", &self.inner.name)
            .field("endpoints", &core.members.len())
            .field("ejected", &core.ejected)
            .finish()
    }
}

/// Builds [`Outliers`]: the clock, a name for events and metrics, a callback.
#[must_use]
pub struct OutliersBuilder<C: Clock = DefaultClock> {
    config: OutlierConfig,
    clock: C,
    name: String,
    on_event: Option<OnEvent>,
}

impl<C: Clock> fmt::Debug for OutliersBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutliersBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .finish()
    }
}

impl<C: Clock> OutliersBuilder<C> {
    /// The clock (default: [`DefaultClock`]).
    pub fn clock<C2: Clock>(self, clock: C2) -> OutliersBuilder<C2> {
        OutliersBuilder {
            config: self.config,
            clock,
            name: self.name,
            on_event: self.on_event,
        }
    }

    /// The name events and metrics carry as `balancer` (default: `"default"`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Called with every [`Event`], outside the detector's lock.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(std::sync::Arc::new(f));
        self
    }

    /// The detector, once the configuration is valid.
    pub fn build(self) -> Result<Outliers<C>, ConfigError> {
        self.config.validate()?;
        let first_eval = self.clock.now().saturating_add(self.config.interval);
        Ok(Outliers {
            inner: Arc::new(Detector {
                config: self.config,
                clock: self.clock,
                name: self.name,
                core: Mutex::new(Core {
                    members: Vec::new(),
                    ejected: 0,
                }),
                next_expiry: AtomicU64::new(u64::MAX),
                next_eval: AtomicU64::new(first_eval.as_nanos()),
                next_id: AtomicU64::new(0),
                on_event: self.on_event,
            }),
        })
    }
}

impl Outliers<DefaultClock> {
    /// A builder of a detector with `config`.
    pub fn builder(config: OutlierConfig) -> OutliersBuilder<DefaultClock> {
        OutliersBuilder {
            config,
            clock: DefaultClock::default(),
            name: "default".to_owned(),
            on_event: None,
        }
    }
}

impl<C: Clock> Outliers<C> {
    /// The configuration.
    pub fn config(&self) -> &OutlierConfig {
        &self.inner.config
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.inner.clock
    }

    /// Adds an endpoint, healthy; `endpoint`'s `Debug` form names it in events.
    pub fn insert(&self, endpoint: impl fmt::Debug) -> EndpointHealth<C> {
        let window = TimeWindow::new(self.inner.config.window.clone(), self.inner.clock.clone())
            .expect("the window configuration was validated");
        let health = Arc::new(Health {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            label: format!("{endpoint:?}"),
            mode: AtomicU8::new(HEALTHY),
            consecutive: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            window,
        });
        self.inner.core.lock().members.push(Member {
            health: health.clone(),
            ejections: 0,
            until: Timestamp::ZERO,
            successes: 0,
        });
        EndpointHealth {
            health,
            detector: self.inner.clone(),
        }
    }

    /// Removes an endpoint; an ejected one frees its place in the ejected share.
    /// Calls still in flight on it record nothing more.
    pub fn remove(&self, endpoint: &EndpointHealth<C>) {
        let mut core = self.inner.core.lock();
        if let Some(i) = core
            .members
            .iter()
            .position(|m| m.health.id == endpoint.health.id)
        {
            let m = core.members.swap_remove(i);
            if m.health.mode.load(Ordering::Acquire) == EJECTED {
                core.ejected -= 1;
            }
            m.health.mode.store(HEALTHY, Ordering::Release);
        }
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.inner.core.lock().members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many endpoints are ejected now.
    pub fn ejected(&self) -> usize {
        self.inner.core.lock().ejected
    }

    /// Ends the ejections due by `now` and, every `interval`, judges the rate and
    /// latency rules. Cheap when neither is due: two loads. Call it once per call
    /// (the balancer does).
    #[inline]
    pub fn tick(&self, now: Timestamp) {
        self.inner.expire_due(now);
        let t = now.as_nanos();
        let next = self.inner.next_eval.load(Ordering::Relaxed);
        if t >= next {
            let after = now.saturating_add(self.inner.config.interval).as_nanos();
            if self
                .inner
                .next_eval
                .compare_exchange(next, after, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                self.inner.evaluate(now);
            }
        }
    }
}

impl<C: Clock> Detector<C> {
    #[inline]
    fn expire_due(&self, now: Timestamp) {
        if now.as_nanos() >= self.next_expiry.load(Ordering::Acquire) {
            let mut events = Vec::new();
            let ejected = {
                let mut core = self.core.lock();
                self.expire(&mut core, now, &mut events);
                core.ejected
            };
            self.emit(&events, ejected);
        }
    }

    /// Moves every ejection due by `now` to probation; under the lock.
    fn expire(&self, core: &mut Core<C>, now: Timestamp, events: &mut Vec<Event>) {
        let mut next = u64::MAX;
        for m in &mut core.members {
            if m.health.mode.load(Ordering::Acquire) != EJECTED {
                continue;
            }
            if m.until <= now {
                m.health.mode.store(PROBATION, Ordering::Release);
                m.health.consecutive.store(0, Ordering::Relaxed);
                m.successes = 0;
                core.ejected -= 1;
                events.push(Event::Probation {
                    endpoint: m.health.label.clone(),
                });
            } else {
                next = next.min(m.until.as_nanos());
            }
        }
        self.next_expiry.store(next, Ordering::Release);
    }

    /// Ejects member `i` if the share allows; under the lock.
    fn eject(
        &self,
        core: &mut Core<C>,
        i: usize,
        reason: EjectReason,
        now: Timestamp,
        events: &mut Vec<Event>,
    ) {
        let max = self.config.max_ejected(core.members.len());
        let m = &mut core.members[i];
        if core.ejected >= max {
            m.successes = 0;
            events.push(Event::EjectionRefused {
                endpoint: m.health.label.clone(),
                reason,
            });
            return;
        }
        m.ejections = m.ejections.saturating_add(1);
        let duration = self.config.ejection_for(m.ejections);
        m.until = now.saturating_add(duration);
        m.successes = 0;
        m.health.mode.store(EJECTED, Ordering::Release);
        m.health.consecutive.store(0, Ordering::Relaxed);
        m.health.window.reset();
        let until = m.until.as_nanos();
        events.push(Event::Ejected {
            endpoint: m.health.label.clone(),
            reason,
            duration,
            ejections: m.ejections,
        });
        core.ejected += 1;
        self.next_expiry.fetch_min(until, Ordering::AcqRel);
    }

    fn position(core: &Core<C>, health: &Health<C>) -> Option<usize> {
        core.members.iter().position(|m| m.health.id == health.id)
    }

    /// A failure of `health` that may eject it.
    fn failed(&self, health: &Health<C>, now: Timestamp) {
        let mut events = Vec::new();
        let ejected = {
            let mut core = self.core.lock();
            self.expire(&mut core, now, &mut events);
            if let Some(i) = Self::position(&core, health) {
                match health.mode.load(Ordering::Acquire) {
                    PROBATION => {
                        self.eject(&mut core, i, EjectReason::ProbationFailed, now, &mut events)
                    }
                    HEALTHY => {
                        let run = health.consecutive.load(Ordering::Relaxed);
                        if self.config.consecutive_failures.is_some_and(|n| run >= n) {
                            self.eject(
                                &mut core,
                                i,
                                EjectReason::ConsecutiveFailures,
                                now,
                                &mut events,
                            );
                        }
                    }
                    _ => {}
                }
            }
            core.ejected
        };
        self.emit(&events, ejected);
    }

    /// A success of `health` on probation.
    fn probation_success(&self, health: &Health<C>, now: Timestamp) {
        let mut events = Vec::new();
        let ejected = {
            let mut core = self.core.lock();
            self.expire(&mut core, now, &mut events);
            if let Some(i) = Self::position(&core, health) {
                let m = &mut core.members[i];
                if m.health.mode.load(Ordering::Acquire) == PROBATION {
                    m.successes += 1;
                    if m.successes >= self.config.probation_successes {
                        m.health.mode.store(HEALTHY, Ordering::Release);
                        m.ejections = 0;
                        m.successes = 0;
                        events.push(Event::Restored {
                            endpoint: m.health.label.clone(),
                        });
                    }
                }
            }
            core.ejected
        };
        self.emit(&events, ejected);
    }

    /// Judges the rate and latency rules over every healthy endpoint.
    fn evaluate(&self, now: Timestamp) {
        let mut events = Vec::new();
        let ejected = {
            let mut core = self.core.lock();
            self.expire(&mut core, now, &mut events);
            let snapshots: Vec<_> = core
                .members
                .iter()
                .map(|m| {
                    (m.health.mode.load(Ordering::Acquire) == HEALTHY)
                        .then(|| m.health.window.snapshot())
                })
                .collect();
            let min = self.config.minimum_calls;
            if let Some(rate) = self.config.failure_rate {
                for (i, s) in snapshots.iter().enumerate() {
                    if let Some(s) = s {
                        if s.calls() >= min && s.failure_rate() * 100.0 >= rate {
                            self.eject(&mut core, i, EjectReason::FailureRate, now, &mut events);
                        }
                    }
                }
            }
            if let Some(factor) = self.config.latency_factor {
                let medians: Vec<Option<Duration>> = snapshots
                    .iter()
                    .map(|s| {
                        s.as_ref()
                            .and_then(|s| s.latency())
                            .filter(|l| l.count() >= min)
                            .and_then(|l| l.p50())
                    })
                    .collect();
                if medians.iter().flatten().count() >= 3 {
                    for (i, mine) in medians.iter().enumerate() {
                        let Some(mine) = mine else { continue };
                        if core.members[i].health.mode.load(Ordering::Acquire) != HEALTHY {
                            continue;
                        }
                        let mut others: Vec<Duration> = medians
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| *j != i)
                            .filter_map(|(_, m)| *m)
                            .collect();
                        others.sort_unstable();
                        let median = others[others.len() / 2];
                        if mine.as_secs_f64() > factor * median.as_secs_f64() {
                            self.eject(&mut core, i, EjectReason::Latency, now, &mut events);
                        }
                    }
                }
            }
            core.ejected
        };
        self.emit(&events, ejected);
    }

    fn emit(&self, events: &[Event], ejected: usize) {
        for e in events {
            event::emit(&self.name, e, ejected);
            if let Some(f) = &self.on_event {
                f(e);
            }
        }
    }
}

/// One endpoint of an [`Outliers`] detector: where its calls are recorded and its
/// state is read. Cheap to clone.
pub struct EndpointHealth<C: Clock = DefaultClock> {
    pub(crate) health: Arc<Health<C>>,
    detector: Arc<Detector<C>>,
}

impl<C: Clock> Clone for EndpointHealth<C> {
    fn clone(&self) -> Self {
        EndpointHealth {
            health: self.health.clone(),
            detector: self.detector.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for EndpointHealth<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointHealth")
            .field("endpoint", &self.health.label)
            .field("state", &self.state())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl<C: Clock> EndpointHealth<C> {
    /// The endpoint's name in events: its `Debug` form.
    pub fn label(&self) -> &str {
        &self.health.label
    }

    /// Records one call's outcome, its duration if measured, at `now` (read from
    /// the detector's clock). Outcomes of calls that end while the endpoint is
    /// ejected are not counted.
    #[inline]
    pub fn record(&self, kind: OutcomeKind, elapsed: Option<Duration>, now: Timestamp) {
        self.detector.expire_due(now);
        let h = &*self.health;
        let mode = h.mode.load(Ordering::Acquire);
        if mode == EJECTED {
            return;
        }
        match elapsed {
            Some(d) => h.window.record_with_duration_at(kind, d, now),
            None => h.window.record_at(kind, now),
        }
        match kind {
            OutcomeKind::Success => {
                if h.consecutive.load(Ordering::Relaxed) != 0 {
                    h.consecutive.store(0, Ordering::Relaxed);
                }
                if mode == PROBATION {
                    self.detector.probation_success(h, now);
                }
            }
            OutcomeKind::Failure => {
                let run = h.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                let limit = self.detector.config.consecutive_failures;
                if mode == PROBATION || limit.is_some_and(|n| run >= n) {
                    self.detector.failed(h, now);
                }
            }
            _ => {}
        }
    }

    /// Whether the endpoint takes calls: not ejected (as of the last
    /// [`tick`](Outliers::tick) or record).
    #[inline]
    pub fn is_available(&self) -> bool {
        self.health.mode.load(Ordering::Acquire) != EJECTED
    }

    /// The endpoint's state (as of the last [`tick`](Outliers::tick) or record).
    pub fn state(&self) -> EndpointState {
        match self.health.mode.load(Ordering::Acquire) {
            EJECTED => {
                let core = self.detector.core.lock();
                let until = Detector::position(&core, &self.health)
                    .map_or(Timestamp::ZERO, |i| core.members[i].until);
                EndpointState::Ejected { until }
            }
            PROBATION => EndpointState::Probation,
            _ => EndpointState::Healthy,
        }
    }

    #[inline]
    pub(crate) fn health_id(&self) -> u64 {
        self.health.id
    }

    /// When the endpoint's ejection ends, if it is ejected.
    pub(crate) fn ejected_until(&self) -> Option<Timestamp> {
        match self.state() {
            EndpointState::Ejected { until } => Some(until),
            _ => None,
        }
    }

    /// Calls in flight on the endpoint (counted by the balancer).
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.health.in_flight.load(Ordering::Relaxed)
    }

    /// Ejections in a row without a passed probation.
    pub fn ejections(&self) -> u32 {
        let core = self.detector.core.lock();
        Detector::position(&core, &self.health).map_or(0, |i| core.members[i].ejections)
    }
}
