//! The breaker against a plain reference model, with proptest-state-machine.
//!
//! Random sequences of steps (acquire, succeed, fail, slow success, ignore, drop a
//! permit, advance time, force) go to both; after every step the breaker's snapshot
//! must equal the model's, and each acquire must be admitted or rejected as the
//! model says. The model keeps time in whole milliseconds, percentages as integers
//! and the window as a queue, so its arithmetic is exact.
#![allow(missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_breaker::WindowConfig;
use palisade_breaker::{
    Breaker, BreakerConfig, OpenDuration, OwnedPermit, Reason, SlowCallConfig, State,
};
use palisade_classify::Outcome;
use palisade_clock::{Clock, ManualClock};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// A call that took this long or longer is slow (when the slow rule is on).
const SLOW_MS: u64 = 2_000;

#[derive(Clone, Debug)]
struct Cfg {
    size: usize,
    minimum_calls: usize,
    failure_rate: Option<u64>,
    slow_rate: Option<u64>,
    consecutive: Option<u32>,
    /// `(initial, max)` in ms, doubling; `initial == max` is a fixed duration.
    open: (u64, u64),
    probes: u32,
    half_open_rate: u64,
    max_probe_wait: u64,
    metrics_only: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Held {
    Closed {
        generation: u64,
        started: u64,
    },
    Probe {
        generation: u64,
        lease: u64,
        started: u64,
    },
    Untracked,
    /// Metrics-only: a call the breaker would have rejected, recorded in the window.
    Shadow {
        generation: u64,
        started: u64,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Admission {
    Admitted {
        probe: bool,
    },
    Rejected {
        state: State,
        retry_after_ms: Option<u64>,
        opened_by: Option<Reason>,
    },
}

#[derive(Clone, Debug)]
struct Model {
    cfg: Cfg,
    now: u64,
    state: State,
    generation: u64,
    /// `(failed, slow)` of the last `size` counted calls.
    window: VecDeque<(bool, bool)>,
    consecutive: u32,
    retry_at: u64,
    reopenings: u32,
    /// Live probe leases: id → start.
    leases: BTreeMap<u64, u64>,
    next_lease: u64,
    successes: u32,
    failures: u32,
    held: Vec<Held>,
    last: Option<Admission>,
    /// Transitions reported to subscribers.
    events: u64,
    /// The duration of the next opening, chosen by `open_for`.
    open_for: Option<u64>,
    /// Why it last opened, as rejections report it.
    opened_by: Option<Reason>,
}

#[derive(Copy, Clone, Debug)]
enum Force {
    Open,
    Closed,
    Disable,
    Reset,
    /// Open for this many ms (`open_for`).
    OpenFor(u64),
}

#[derive(Copy, Clone, Debug)]
enum Step {
    Acquire,
    Succeed(usize),
    Fail(usize),
    /// Advance the time by the slow-call duration, then succeed.
    Slow(usize),
    Ignore(usize),
    Drop(usize),
    Advance(u64),
    Force(Force),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum End {
    Success,
    Failure,
    Ignored,
    Dropped,
}

/// Whether `part / whole >= percent / 100`, exactly.
fn reaches(part: u64, whole: u64, percent: u64) -> bool {
    whole > 0 && part * 100 >= percent * whole
}

impl Model {
    fn transition(&mut self, to: State) {
        if to != self.state {
            self.events += 1;
        }
        self.generation += 1;
        self.leases.clear();
        self.successes = 0;
        self.failures = 0;
        match to {
            State::Open if self.open_for.is_some() => {
                self.retry_at = self.now + self.open_for.take().unwrap();
            }
            State::Open => {
                let (initial, max) = self.cfg.open;
                let grown = initial.saturating_mul(1u64 << self.reopenings.min(40));
                self.retry_at = self.now + grown.min(max);
                self.reopenings += 1;
            }
            State::Closed | State::ForcedClosed | State::Disabled => {
                self.opened_by = None;
            }
            _ => {}
        }
        match to {
            State::Closed | State::ForcedClosed => {
                self.reopenings = 0;
                self.window.clear();
                self.consecutive = 0;
            }
            _ => {}
        }
        self.state = to;
    }

    fn reject_or_untracked(&mut self, state: State, retry_after_ms: Option<u64>) {
        if self.cfg.metrics_only {
            self.admit(Held::Shadow {
                generation: self.generation,
                started: self.now,
            });
        } else {
            self.last = Some(Admission::Rejected {
                state,
                retry_after_ms,
                opened_by: self.opened_by,
            });
        }
    }

    fn admit(&mut self, held: Held) {
        self.last = Some(Admission::Admitted {
            probe: matches!(held, Held::Probe { .. }),
        });
        self.held.push(held);
    }

    fn acquire(&mut self) {
        match self.state {
            State::Closed | State::ForcedClosed => self.admit(Held::Closed {
                generation: self.generation,
                started: self.now,
            }),
            State::Disabled => self.admit(Held::Untracked),
            State::ForcedOpen => self.reject_or_untracked(State::ForcedOpen, None),
            State::Open if self.now < self.retry_at => {
                self.reject_or_untracked(State::Open, Some(self.retry_at - self.now))
            }
            State::Open => {
                self.transition(State::HalfOpen);
                self.probe();
            }
            _ => self.probe(),
        }
    }

    fn probe(&mut self) {
        let now = self.now;
        let wait = self.cfg.max_probe_wait;
        self.leases.retain(|_, started| now - *started < wait);
        let needed = self.cfg.probes - (self.successes + self.failures);
        if (self.leases.len() as u32) < needed {
            let lease = self.next_lease;
            self.next_lease += 1;
            self.leases.insert(lease, now);
            self.admit(Held::Probe {
                generation: self.generation,
                lease,
                started: now,
            });
        } else {
            // A slot frees at the latest when the first lease runs out.
            let first = self
                .leases
                .values()
                .min()
                .map(|started| started + wait - now);
            self.reject_or_untracked(State::HalfOpen, first);
        }
    }

    fn is_slow(&self, started: u64) -> bool {
        self.cfg.slow_rate.is_some() && self.now - started >= SLOW_MS
    }

    /// Adds a counted call to the window.
    fn push(&mut self, failed: bool, slow: bool) {
        self.window.push_back((failed, slow));
        if self.window.len() > self.cfg.size {
            self.window.pop_front();
        }
    }

    fn end(&mut self, index: usize, end: End) {
        let held = self.held.remove(index % self.held.len());
        match held {
            Held::Untracked => {}
            Held::Shadow {
                generation,
                started,
            } => {
                if generation == self.generation && matches!(end, End::Success | End::Failure) {
                    let slow = self.is_slow(started);
                    self.push(end == End::Failure, slow);
                }
            }
            Held::Closed {
                generation,
                started,
            } => {
                if generation != self.generation || matches!(end, End::Ignored | End::Dropped) {
                    return;
                }
                let failed = end == End::Failure;
                let slow = self.is_slow(started);
                self.push(failed, slow);
                if self.state != State::Closed {
                    return;
                }
                if failed {
                    self.consecutive += 1;
                    if self.cfg.consecutive.is_some_and(|n| self.consecutive >= n) {
                        self.opened_by = Some(Reason::ConsecutiveFailures);
                        self.transition(State::Open);
                        return;
                    }
                } else {
                    self.consecutive = 0;
                    if !slow {
                        return;
                    }
                }
                let calls = self.window.len() as u64;
                if calls < self.cfg.minimum_calls as u64 {
                    return;
                }
                let failures = self.window.iter().filter(|(f, _)| *f).count() as u64;
                let slows = self.window.iter().filter(|(_, s)| *s).count() as u64;
                if self
                    .cfg
                    .failure_rate
                    .is_some_and(|p| reaches(failures, calls, p))
                {
                    self.opened_by = Some(Reason::FailureRate);
                    self.transition(State::Open);
                } else if self.cfg.slow_rate.is_some_and(|p| reaches(slows, calls, p)) {
                    self.opened_by = Some(Reason::SlowCallRate);
                    self.transition(State::Open);
                }
            }
            Held::Probe {
                generation,
                lease,
                started,
            } => {
                if generation != self.generation || self.leases.remove(&lease).is_none() {
                    return;
                }
                let slow = self.is_slow(started);
                let failed = match end {
                    End::Ignored | End::Dropped => return,
                    End::Failure => true,
                    End::Success => slow,
                };
                if self.cfg.metrics_only {
                    // Metrics-only: the probes are recorded in the window too.
                    self.push(end == End::Failure, slow);
                }
                if failed {
                    self.failures += 1;
                } else {
                    self.successes += 1;
                }
                let k = u64::from(self.cfg.probes);
                // The fewest failures out of k that reach the half-open threshold.
                let to_reopen = (1..=k)
                    .find(|&f| reaches(f, k, self.cfg.half_open_rate))
                    .unwrap_or(k);
                if u64::from(self.failures) >= to_reopen {
                    self.opened_by = Some(Reason::ProbesFailed);
                    self.transition(State::Open);
                } else if u64::from(self.successes) > k - to_reopen {
                    self.transition(State::Closed);
                }
            }
        }
    }
}

struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        (
            1usize..=6,
            0usize..6,
            prop_oneof![
                Just(None),
                Just(Some(20u64)),
                Just(Some(50)),
                Just(Some(100))
            ],
            prop_oneof![Just(None), Just(Some(50u64))],
            prop_oneof![Just(None), (1u32..=4).prop_map(Some)],
            prop_oneof![Just((10_000u64, 10_000u64)), Just((1_000, 8_000))],
            1u32..=3,
            prop_oneof![Just(20u64), Just(50), Just(100)],
            prop_oneof![Just(3_000u64), Just(20_000)],
            prop::bool::weighted(0.2),
        )
            .prop_filter("at least one trip rule", |(_, _, fr, sr, c, ..)| {
                fr.is_some() || sr.is_some() || c.is_some()
            })
            .prop_map(
                |(size, min, failure_rate, slow_rate, consecutive, open, probes, hr, wait, mo)| {
                    Model {
                        cfg: Cfg {
                            size,
                            minimum_calls: 1 + min % size,
                            failure_rate,
                            slow_rate,
                            consecutive,
                            open,
                            probes,
                            half_open_rate: hr,
                            max_probe_wait: wait,
                            metrics_only: mo,
                        },
                        now: 0,
                        state: State::Closed,
                        generation: 0,
                        window: VecDeque::new(),
                        consecutive: 0,
                        retry_at: 0,
                        reopenings: 0,
                        leases: BTreeMap::new(),
                        next_lease: 0,
                        successes: 0,
                        failures: 0,
                        held: Vec::new(),
                        last: None,
                        events: 0,
                        open_for: None,
                        opened_by: None,
                    }
                },
            )
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let time = prop_oneof![
            Just(1u64),
            Just(500),
            Just(1_000),
            Just(2_999),
            Just(5_000),
            Just(10_000),
            Just(30_000)
        ]
        .prop_map(Step::Advance);
        let force = prop_oneof![
            Just(Force::Open),
            Just(Force::Closed),
            Just(Force::Disable),
            Just(Force::Reset),
            prop_oneof![Just(0u64), Just(1_000), Just(7_000)].prop_map(Force::OpenFor)
        ]
        .prop_map(Step::Force);
        if state.held.is_empty() {
            return prop_oneof![6 => Just(Step::Acquire), 2 => time, 1 => force].boxed();
        }
        let i = any::<usize>();
        prop_oneof![
            5 => Just(Step::Acquire),
            4 => i.prop_map(Step::Succeed),
            4 => i.prop_map(Step::Fail),
            1 => i.prop_map(Step::Slow),
            1 => i.prop_map(Step::Ignore),
            2 => i.prop_map(Step::Drop),
            2 => time,
            1 => force,
        ]
        .boxed()
    }

    fn preconditions(state: &Model, step: &Step) -> bool {
        match step {
            Step::Succeed(_) | Step::Fail(_) | Step::Slow(_) | Step::Ignore(_) | Step::Drop(_) => {
                !state.held.is_empty()
            }
            Step::Acquire => state.held.len() < 12,
            _ => true,
        }
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        state.last = None;
        match *step {
            Step::Acquire => state.acquire(),
            Step::Succeed(i) => state.end(i, End::Success),
            Step::Fail(i) => state.end(i, End::Failure),
            Step::Slow(i) => {
                state.now += SLOW_MS;
                state.end(i, End::Success);
            }
            Step::Ignore(i) => state.end(i, End::Ignored),
            Step::Drop(i) => state.end(i, End::Dropped),
            Step::Advance(ms) => state.now += ms,
            Step::Force(f) => match f {
                Force::Open if state.state != State::ForcedOpen => {
                    state.opened_by = Some(Reason::ForcedOpen);
                    state.transition(State::ForcedOpen)
                }
                Force::Closed if state.state != State::ForcedClosed => {
                    state.transition(State::ForcedClosed)
                }
                Force::Disable if state.state != State::Disabled => {
                    state.transition(State::Disabled)
                }
                Force::Reset => state.transition(State::Closed),
                Force::OpenFor(ms) => {
                    state.opened_by = Some(Reason::OpenedFor);
                    state.open_for = Some(ms);
                    state.transition(State::Open);
                }
                _ => {}
            },
        }
        state
    }
}

struct Real {
    breaker: Breaker<ManualClock>,
    clock: ManualClock,
    events: Arc<AtomicU64>,
    permits: Vec<OwnedPermit<ManualClock>>,
}

fn config(cfg: &Cfg) -> BreakerConfig {
    let ms = Duration::from_millis;
    let open = if cfg.open.0 == cfg.open.1 {
        OpenDuration::fixed(ms(cfg.open.0))
    } else {
        OpenDuration::Exponential {
            initial: ms(cfg.open.0),
            factor: 2.0,
            max: ms(cfg.open.1),
        }
    };
    BreakerConfig::default()
        .window(WindowConfig::Count {
            size: cfg.size as u32,
        })
        .minimum_calls(cfg.minimum_calls as u32)
        .failure_rate_threshold(cfg.failure_rate.map(|p| p as f64))
        .slow_call(
            cfg.slow_rate
                .map(|p| SlowCallConfig::new(ms(SLOW_MS), p as f64)),
        )
        .consecutive_failures(cfg.consecutive)
        .open(open)
        .half_open_probes(cfg.probes)
        .half_open_failure_rate_threshold(cfg.half_open_rate as f64)
        .max_probe_wait(ms(cfg.max_probe_wait))
        .metrics_only(cfg.metrics_only)
}

impl Real {
    fn end(&mut self, index: usize, outcome: Option<Outcome>) {
        let permit = self.permits.remove(index % self.permits.len());
        match outcome {
            Some(o) => permit.record(o),
            None => drop(permit),
        }
    }
}

impl StateMachineTest for Real {
    type SystemUnderTest = Real;
    type Reference = Reference;

    fn init_test(model: &Model) -> Real {
        let clock = ManualClock::new();
        let events = Arc::new(AtomicU64::new(0));
        let counter = events.clone();
        let breaker = Breaker::builder(config(&model.cfg))
            .clock(clock.clone())
            .on_transition(move |t| {
                assert_ne!(t.from, t.to, "a transition changes the state");
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .expect("the model's configurations are valid");
        Real {
            breaker,
            clock,
            events,
            permits: Vec::new(),
        }
    }

    fn apply(mut real: Real, model: &Model, step: Step) -> Real {
        match step {
            Step::Acquire => {
                let got = match real.breaker.try_acquire_owned() {
                    Ok(permit) => {
                        let probe = permit.is_probe();
                        real.permits.push(permit);
                        Admission::Admitted { probe }
                    }
                    Err(r) => Admission::Rejected {
                        state: r.state(),
                        retry_after_ms: r.retry_after().map(|d| d.as_millis() as u64),
                        opened_by: r.opened_by(),
                    },
                };
                assert_eq!(Some(got), model.last, "acquire");
            }
            Step::Succeed(i) => real.end(i, Some(Outcome::Success)),
            Step::Fail(i) => real.end(i, Some(Outcome::transient())),
            Step::Slow(i) => {
                real.clock.advance(Duration::from_millis(SLOW_MS));
                real.end(i, Some(Outcome::Success));
            }
            Step::Ignore(i) => real.end(i, Some(Outcome::Ignored)),
            Step::Drop(i) => real.end(i, None),
            Step::Advance(ms) => real.clock.advance(Duration::from_millis(ms)),
            Step::Force(f) => match f {
                Force::Open => real.breaker.force_open(),
                Force::Closed => real.breaker.force_closed(),
                Force::Disable => real.breaker.disable(),
                Force::Reset => real.breaker.reset(),
                Force::OpenFor(ms) => real.breaker.open_for(Duration::from_millis(ms)),
            },
        }
        real
    }

    fn check_invariants(real: &Real, model: &Model) {
        let s = real.breaker.snapshot();
        assert_eq!(s.state, model.state, "state");
        assert_eq!(s.generation, model.generation, "generation");
        assert_eq!(s.calls, model.window.len() as u64, "calls");
        let failures = model.window.iter().filter(|(f, _)| *f).count() as u64;
        let slows = model.window.iter().filter(|(_, s)| *s).count() as u64;
        assert_eq!(s.failures, failures, "failures");
        assert_eq!(s.slow_calls, slows, "slow calls");
        assert_eq!(
            s.consecutive_failures, model.consecutive,
            "consecutive failures"
        );
        assert_eq!(
            s.probes_in_flight as usize,
            model.leases.len(),
            "probes in flight"
        );
        assert!(s.probes_in_flight <= model.cfg.probes, "probe limit");
        assert_eq!(
            (s.probe_successes, s.probe_failures),
            (model.successes, model.failures),
            "probe outcomes"
        );
        let expected_retry = (model.state == State::Open)
            .then(|| Duration::from_millis(model.retry_at.saturating_sub(model.now)));
        assert_eq!(s.retry_after, expected_retry, "retry after");
        assert_eq!(s.metrics_only, model.cfg.metrics_only);
        assert_eq!(real.events.load(Ordering::Relaxed), model.events, "events");
        assert_eq!(real.permits.len(), model.held.len());
        assert_eq!(
            real.clock.now().as_duration(),
            Duration::from_millis(model.now)
        );
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 4096,
        // Seeds of failures found so far, replayed first on every run.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("tests/model.proptest-regressions"),
        )),
        .. ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_the_model(sequential 1..80 => Real);
}
