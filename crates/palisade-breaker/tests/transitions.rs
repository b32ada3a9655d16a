//! Every transition, in virtual time.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_breaker::{
    Breaker, BreakerConfig, OpenDuration, Reason, SlowCallConfig, State, Transition, WindowConfig,
};
use palisade_classify::{Outcome, Rejection, Strategy};
use palisade_clock::{Clock, ManualClock};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Consecutive-failures rule only, fixed 10 s open, 2 probes.
fn simple() -> BreakerConfig {
    BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(3))
        .open(OpenDuration::fixed(secs(10)))
        .half_open_probes(2)
}

fn build(
    config: BreakerConfig,
) -> (
    Breaker<ManualClock>,
    ManualClock,
    Arc<Mutex<Vec<Transition>>>,
) {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let breaker = Breaker::builder(config)
        .clock(clock.clone())
        .name("test")
        .on_transition(move |t| log.lock().unwrap().push(*t))
        .build()
        .unwrap();
    (breaker, clock, seen)
}

fn run(b: &Breaker<ManualClock>, outcome: Outcome) {
    b.try_acquire().expect("admitted").record(outcome);
}

fn reasons(seen: &Mutex<Vec<Transition>>) -> Vec<(State, Reason)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|t| (t.to, t.reason))
        .collect()
}

#[test]
fn consecutive_failures_open_and_success_resets_the_run() {
    let (b, _, seen) = build(simple());
    run(&b, Outcome::transient());
    run(&b, Outcome::Permanent);
    run(&b, Outcome::Success);
    run(&b, Outcome::transient());
    run(&b, Outcome::transient());
    // Ignored outcomes neither count nor break the run.
    run(&b, Outcome::Ignored);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::Open);
    assert_eq!(reasons(&seen), [(State::Open, Reason::ConsecutiveFailures)]);
}

#[test]
fn open_rejects_with_retry_after_and_half_opens_on_the_next_call() {
    let (b, clock, seen) = build(simple());
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state(), State::Open);
    assert_eq!(r.retry_after(), Some(secs(10)));
    assert_eq!(
        Rejection::from(r),
        Rejection::new(Strategy::CircuitBreaker).with_retry_after(secs(10))
    );
    clock.advance(secs(4));
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(6)));
    assert_eq!(b.snapshot().retry_after, Some(secs(6)));
    assert_eq!(b.snapshot().time_in_state, secs(4));
    clock.advance(Duration::from_nanos(6_000_000_000 - 1));
    assert!(b.try_acquire().is_err());
    assert_eq!(b.state(), State::Open);
    clock.advance(Duration::from_nanos(1));
    // The state moves only on a call.
    assert_eq!(b.state(), State::Open);
    let p = b.try_acquire().unwrap();
    assert!(p.is_probe());
    assert_eq!(b.state(), State::HalfOpen);
    drop(p);
    assert_eq!(
        reasons(&seen),
        [
            (State::Open, Reason::ConsecutiveFailures),
            (State::HalfOpen, Reason::OpenDurationElapsed)
        ]
    );
}

fn half_open(b: &Breaker<ManualClock>, clock: &ManualClock) {
    for _ in 0..3 {
        run(b, Outcome::transient());
    }
    clock.advance(secs(10));
}

#[test]
fn half_open_admits_at_most_k_probes() {
    let (b, clock, _) = build(simple());
    half_open(&b, &clock);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.state(), State::HalfOpen);
    // The default lease, just started: a slot frees within 30 s at the latest.
    assert_eq!(r.retry_after(), Some(secs(30)));
    assert_eq!(b.snapshot().probes_in_flight, 2);
    // One outcome counted: only one more probe is needed, and one is running.
    p1.record(Outcome::Success);
    assert_eq!(b.state(), State::HalfOpen);
    assert!(b.try_acquire().is_err());
    p2.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn probes_close_on_success_and_reopen_on_failure() {
    let (b, clock, seen) = build(
        simple()
            .half_open_probes(4)
            .half_open_failure_rate_threshold(50.0),
    );
    half_open(&b, &clock);
    // 2 failures out of 4 reach 50 %: reopen as soon as that is certain.
    run(&b, Outcome::Success);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::HalfOpen);
    run(&b, Outcome::Permanent);
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));
    // 3 successes out of 4 make 50 % failures impossible: close.
    run(&b, Outcome::Success);
    run(&b, Outcome::transient());
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::HalfOpen);
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    let r = reasons(&seen);
    assert_eq!(
        r[2..],
        [
            (State::Open, Reason::ProbesFailed),
            (State::HalfOpen, Reason::OpenDurationElapsed),
            (State::Closed, Reason::ProbesSucceeded)
        ]
    );
}

#[test]
fn ignored_and_dropped_probes_free_their_slot_without_counting() {
    let (b, clock, _) = build(simple());
    half_open(&b, &clock);
    for _ in 0..10 {
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
        p1.record(Outcome::Ignored);
        drop(p2);
        let s = b.snapshot();
        assert_eq!(
            (s.probes_in_flight, s.probe_successes, s.probe_failures),
            (0, 0, 0)
        );
    }
    // A rejection outcome is not counted either.
    let p = b.try_acquire().unwrap();
    p.record(Outcome::Rejected(Rejection::new(Strategy::Bulkhead)));
    assert_eq!(b.state(), State::HalfOpen);
    run(&b, Outcome::Success);
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_lost_probe_lease_expires() {
    let (b, clock, _) = build(simple().half_open_probes(1).max_probe_wait(secs(30)));
    half_open(&b, &clock);
    let lost = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    clock.advance(secs(29));
    assert!(b.try_acquire().is_err());
    clock.advance(secs(1));
    let fresh = b.try_acquire().expect("the lost probe's lease expired");
    // The lost probe's late outcome is dropped: it cannot reopen the breaker.
    lost.record(Outcome::transient());
    assert_eq!(b.state(), State::HalfOpen);
    fresh.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn outcomes_from_an_earlier_generation_are_dropped() {
    let (b, clock, _) = build(simple());
    // Admitted while closed; the breaker opens before it reports.
    let old = b.try_acquire().unwrap();
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    clock.advance(secs(10));
    run(&b, Outcome::Success);
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    let closed_gen = b.snapshot().generation;
    // A stale failure counts for nothing in the new closed state.
    old.record(Outcome::transient());
    assert_eq!(b.snapshot().consecutive_failures, 0);
    assert_eq!(b.snapshot().generation, closed_gen);

    // A stale probe cannot decide a later half-open state.
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    clock.advance(secs(10));
    let stale_probe = b.try_acquire().unwrap();
    let other = b.try_acquire().unwrap();
    // 1 failure of 2 probes reaches the default 50 %: reopened.
    other.record(Outcome::transient());
    assert_eq!(b.state(), State::Open);
    stale_probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn open_duration_grows_and_resets_after_a_clean_close() {
    let config = simple()
        .half_open_probes(1)
        .open(OpenDuration::Exponential {
            initial: secs(1),
            factor: 2.0,
            max: secs(5),
        });
    let (b, clock, _) = build(config);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
        seen.push(wait.as_secs());
        clock.advance(wait);
        run(&b, Outcome::transient());
    }
    assert_eq!(seen, [1, 2, 4, 5, 5]);
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    clock.advance(wait);
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(1)));
}

#[test]
fn failure_rate_over_a_count_window_with_minimum_calls() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(WindowConfig::Count { size: 10 })
        .minimum_calls(4);
    let (b, _, seen) = build(config);
    run(&b, Outcome::transient());
    run(&b, Outcome::transient());
    run(&b, Outcome::transient());
    // 3 of 3 failed, but the window holds fewer than 4 calls.
    assert_eq!(b.state(), State::Closed);
    run(&b, Outcome::Success);
    // 3 of 4: the rule is judged only after a failure.
    assert_eq!(b.state(), State::Closed);
    let s = b.snapshot();
    assert_eq!((s.calls, s.failures), (4, 3));
    assert_eq!(s.failure_rate, 75.0);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::Open);
    assert_eq!(reasons(&seen), [(State::Open, Reason::FailureRate)]);
}

#[test]
fn failure_rate_below_threshold_stays_closed() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(WindowConfig::Count { size: 10 })
        .minimum_calls(10);
    let (b, _, _) = build(config);
    for i in 0..100 {
        run(
            &b,
            if i % 3 == 0 {
                Outcome::transient()
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn time_window_forgets_old_failures() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(WindowConfig::Time {
            buckets: 10,
            bucket_width: secs(1),
        })
        .minimum_calls(4);
    let (b, clock, _) = build(config);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    clock.advance(secs(11));
    run(&b, Outcome::Success);
    run(&b, Outcome::Success);
    run(&b, Outcome::Success);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().calls, 4);
}

#[test]
fn slow_call_rate_opens() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(None)
        .slow_call(Some(SlowCallConfig::new(secs(2), 50.0)))
        .window(WindowConfig::Count { size: 4 })
        .minimum_calls(4);
    let (b, clock, seen) = build(config);
    for slow in [false, true, false] {
        let p = b.try_acquire().unwrap();
        if slow {
            clock.advance(secs(2));
        }
        p.record(Outcome::Success);
    }
    assert_eq!(b.state(), State::Closed);
    let p = b.try_acquire().unwrap();
    clock.advance(secs(3));
    p.record(Outcome::Success);
    assert_eq!(b.state(), State::Open);
    assert_eq!(reasons(&seen), [(State::Open, Reason::SlowCallRate)]);
    assert_eq!(b.snapshot().slow_calls, 2);
}

#[test]
fn operator_controls() {
    let (b, _, seen) = build(simple());
    b.force_open();
    let r = b.try_acquire().unwrap_err();
    assert_eq!((r.state(), r.retry_after()), (State::ForcedOpen, None));
    b.reset();
    assert_eq!(b.state(), State::Closed);
    b.force_closed();
    for _ in 0..10 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::ForcedClosed);
    assert_eq!(b.snapshot().failures, 10);
    b.disable();
    for _ in 0..10 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::Disabled);
    assert_eq!(b.snapshot().failures, 10);
    b.reset();
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.calls, s.consecutive_failures),
        (State::Closed, 0, 0)
    );
    assert_eq!(
        reasons(&seen),
        [
            (State::ForcedOpen, Reason::ForcedOpen),
            (State::Closed, Reason::Reset),
            (State::ForcedClosed, Reason::ForcedClosed),
            (State::Disabled, Reason::Disabled),
            (State::Closed, Reason::Reset),
        ]
    );
    let gens: Vec<u64> = seen.lock().unwrap().iter().map(|t| t.generation).collect();
    assert_eq!(gens, [1, 2, 3, 4, 5]);
}

#[test]
fn metrics_only_never_rejects_but_reports() {
    let (b, clock, seen) = build(simple().metrics_only(true));
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::Open);
    assert!(b.snapshot().metrics_only);
    // Would reject: admitted, counted for nothing.
    for _ in 0..5 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let extra = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe() && !extra.is_probe());
    extra.record(Outcome::transient());
    p1.record(Outcome::Success);
    p2.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    b.force_open();
    run(&b, Outcome::Success);
    assert_eq!(reasons(&seen).len(), 4);
}

#[test]
fn reconfigure_keeps_state_and_counters() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(Some(90.0))
        .window(WindowConfig::Count { size: 10 })
        .minimum_calls(4);
    let (b, _, _) = build(config.clone());
    run(&b, Outcome::transient());
    run(&b, Outcome::Success);
    run(&b, Outcome::Success);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::Closed);
    // A lower threshold applies to the next outcome, on the same counters.
    b.reconfigure(config.clone().failure_rate_threshold(Some(50.0)))
        .unwrap();
    assert_eq!(b.snapshot().calls, 4);
    run(&b, Outcome::transient());
    assert_eq!(b.state(), State::Open);
    let before = b.snapshot();
    // Changing the threshold does not reset an open breaker.
    b.reconfigure(config.clone().failure_rate_threshold(Some(20.0)))
        .unwrap();
    let after = b.snapshot();
    assert_eq!(
        (after.state, after.generation),
        (State::Open, before.generation)
    );
    assert_eq!(after.calls, before.calls);
    // Shape changes and bad values are errors; the old config stays.
    let err = b
        .reconfigure(config.clone().window(WindowConfig::Count { size: 20 }))
        .unwrap_err();
    assert_eq!(err.field(), "window");
    let err = b.reconfigure(config.clone().minimum_calls(0)).unwrap_err();
    assert_eq!(err.field(), "minimum_calls");
    assert_eq!(b.config().get_failure_rate_threshold(), Some(20.0));
    // Metrics-only applies at once.
    b.reconfigure(config.failure_rate_threshold(Some(20.0)).metrics_only(true))
        .unwrap();
    assert!(b.try_acquire().is_ok());
}

#[test]
fn hooks_may_call_the_breaker() {
    let clock = ManualClock::new();
    let slot: Arc<Mutex<Option<Breaker<ManualClock>>>> = Arc::new(Mutex::new(None));
    let inner = slot.clone();
    let states = Arc::new(Mutex::new(Vec::new()));
    let log = states.clone();
    let b = Breaker::builder(simple())
        .clock(clock)
        .on_transition(move |_| {
            if let Some(b) = inner.lock().unwrap().as_ref() {
                log.lock().unwrap().push(b.snapshot().state);
            }
        })
        .build()
        .unwrap();
    *slot.lock().unwrap() = Some(b.clone());
    b.force_open();
    assert_eq!(*states.lock().unwrap(), [State::ForcedOpen]);
    slot.lock().unwrap().take();
}

#[test]
fn sync_call_api() {
    let (b, _, _) = build(simple());
    assert_eq!(b.call_sync(|| Ok::<_, ()>(7)).unwrap(), 7);
    for _ in 0..3 {
        assert!(
            !b.call_sync(|| Err::<(), _>("down"))
                .unwrap_err()
                .is_rejected()
        );
    }
    let e = b.call_sync(|| Ok::<_, ()>(7)).unwrap_err();
    assert!(e.is_rejected());
    assert!(e.into_inner().is_none());
}

/// A manual clock that counts its exact readings.
#[derive(Clone, Debug, Default)]
struct CountingClock {
    inner: ManualClock,
    exact: Arc<std::sync::atomic::AtomicUsize>,
}

impl palisade_clock::Clock for CountingClock {
    type Sleep = palisade_clock::ManualSleep;

    fn now(&self) -> palisade_clock::Timestamp {
        self.exact.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.now()
    }

    fn recent(&self) -> palisade_clock::Timestamp {
        self.inner.now()
    }

    fn sleep_until(&self, deadline: palisade_clock::Timestamp) -> Self::Sleep {
        self.inner.sleep_until(deadline)
    }
}

#[test]
fn healthy_calls_and_rejections_read_no_exact_clock() {
    let clock = CountingClock::default();
    let b = Breaker::builder(simple())
        .clock(clock.clone())
        .build()
        .unwrap();
    let reads = || clock.exact.load(std::sync::atomic::Ordering::SeqCst);
    let before = reads();
    for _ in 0..1000 {
        b.try_acquire().unwrap().record(Outcome::Success);
    }
    assert_eq!(reads(), before, "closed-state calls read the exact clock");
    for _ in 0..3 {
        run_on(&b, Outcome::transient());
    }
    let opened = reads();
    for _ in 0..1000 {
        assert!(b.try_acquire().is_err());
    }
    assert_eq!(reads(), opened, "rejections read the exact clock");
    // Once the coarse reading says the open duration has passed, the next call
    // looks closer and moves on.
    clock.inner.advance(secs(10));
    assert!(b.try_acquire().unwrap().is_probe());
}

fn run_on<C: palisade_clock::Clock>(b: &Breaker<C>, outcome: Outcome) {
    b.try_acquire().expect("admitted").record(outcome);
}

#[test]
fn open_durations_follow_a_backoff_schedule() {
    use palisade_backoff::{Backoff, Jitter};
    let schedule = Backoff::exponential(secs(1))
        .jitter(Jitter::None)
        .max_attempts(4)
        .build()
        .unwrap();
    let (b, clock, _) = build(
        simple()
            .half_open_probes(1)
            .open(OpenDuration::Schedule(schedule)),
    );
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
        seen.push(wait.as_secs());
        clock.advance(wait);
        run(&b, Outcome::transient());
    }
    // Three delays, then the last one repeats.
    assert_eq!(seen, [1, 2, 4, 4, 4]);
    let wait = b.try_acquire().unwrap_err().retry_after().unwrap();
    clock.advance(wait);
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    // A clean close starts the schedule over.
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(secs(1)));
}

#[test]
fn metrics_only_keeps_recording_every_call_while_it_would_be_open() {
    let config = simple()
        .metrics_only(true)
        .window(WindowConfig::Count { size: 100 });
    let (b, clock, seen) = build(config);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::Open);
    // Calls the breaker would reject still reach the window.
    for _ in 0..4 {
        run(&b, Outcome::transient());
    }
    run(&b, Outcome::Success);
    let s = b.snapshot();
    assert_eq!((s.calls, s.failures), (8, 7));
    // Half-open: the probes and the calls beyond them are recorded too.
    clock.advance(secs(10));
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let extra = b.try_acquire().unwrap();
    assert!(p1.is_probe() && p2.is_probe() && !extra.is_probe());
    extra.record(Outcome::transient());
    p1.record(Outcome::transient());
    let s = b.snapshot();
    assert_eq!((s.calls, s.failures), (10, 9));
    // Reopened by the failed probe; a forced opening records as well.
    assert_eq!(b.state(), State::Open);
    drop(p2);
    b.force_open();
    run(&b, Outcome::Success);
    assert_eq!(b.snapshot().calls, 11);
    let transitions = seen.lock().unwrap().clone();
    assert!(transitions.iter().all(|t| t.metrics_only));
}

/// Failure rate 50 % over a count window of 10, at least 5 calls.
fn rate_rule() -> BreakerConfig {
    BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(WindowConfig::Count { size: 10 })
        .minimum_calls(5)
}

#[test]
fn a_success_that_completes_the_minimum_calls_does_not_trip_the_next_failure_does() {
    let (b, _, seen) = build(rate_rule());
    for outcome in [
        Outcome::transient(),
        Outcome::transient(),
        Outcome::transient(),
        Outcome::Success,
        Outcome::Success,
    ] {
        run(&b, outcome);
    }
    let s = b.snapshot();
    assert_eq!((s.state, s.calls, s.failure_rate), (State::Closed, 5, 60.0));
    run(&b, Outcome::transient());
    assert_eq!(reasons(&seen), [(State::Open, Reason::FailureRate)]);
}

#[test]
fn a_slow_success_applies_the_failure_rate_rule_too() {
    let config = rate_rule().slow_call(Some(SlowCallConfig::new(secs(1), 100.0)));
    let (b, clock, seen) = build(config);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    run(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    // The fifth call, slow but successful, completes the minimum at 60 % failures.
    let permit = b.try_acquire().unwrap();
    clock.advance(secs(2));
    permit.record(Outcome::Success);
    assert_eq!(reasons(&seen), [(State::Open, Reason::FailureRate)]);
}

#[test]
fn reset_of_a_closed_breaker_is_silent_but_starts_a_new_generation() {
    let (b, _, seen) = build(simple());
    run(&b, Outcome::transient());
    let before = b.snapshot().generation;
    // A permit of the old generation no longer counts.
    let old = b.try_acquire().unwrap();
    b.reset();
    old.record(Outcome::transient());
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.calls, s.generation),
        (State::Closed, 0, before + 1)
    );
    assert!(reasons(&seen).is_empty());
}

#[test]
fn a_panicking_subscriber_neither_escapes_nor_holds_a_probe_slot() {
    let clock = ManualClock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let b = Breaker::builder(simple().half_open_probes(1))
        .clock(clock.clone())
        .on_transition(|_| panic!("the subscriber panics"))
        .on_transition(move |t| log.lock().unwrap().push(t.to))
        .build()
        .unwrap();
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    assert_eq!(b.state(), State::Open);
    clock.advance(secs(10));
    // The transition to half-open panics in the first subscriber: the probe is
    // still handed over, and the next subscriber still hears of it.
    let probe = b.try_acquire().expect("admitted despite the subscriber");
    assert!(probe.is_probe());
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        *seen.lock().unwrap(),
        [State::Open, State::HalfOpen, State::Closed]
    );
}

#[test]
fn open_for_rejects_for_its_duration_then_probes_as_after_any_opening() {
    let (b, clock, seen) = build(simple());
    b.open_for(secs(7));
    let r = b.try_acquire().unwrap_err();
    assert_eq!((r.state(), r.retry_after()), (State::Open, Some(secs(7))));
    clock.advance(secs(7));
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe.record(Outcome::Success);
    run(&b, Outcome::Success);
    assert_eq!(
        reasons(&seen),
        [
            (State::Open, Reason::OpenedFor),
            (State::HalfOpen, Reason::OpenDurationElapsed),
            (State::Closed, Reason::ProbesSucceeded),
        ]
    );
}

#[test]
fn open_until_an_instant_replaces_the_end_of_an_opening() {
    let (b, clock, seen) = build(simple());
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    // Open for 10 s by the rule; held until 30 s from now instead.
    b.open_until(clock.now() + secs(30));
    clock.advance(secs(10));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.retry_after(), Some(secs(20)));
    // The state stays open: no transition is reported for the new end.
    assert_eq!(reasons(&seen), [(State::Open, Reason::ConsecutiveFailures)]);
    clock.advance(secs(20));
    assert!(b.try_acquire().unwrap().is_probe());
}

#[test]
fn open_for_does_not_lengthen_the_next_opening() {
    let config = simple().open(OpenDuration::Exponential {
        initial: secs(1),
        factor: 2.0,
        max: secs(60),
    });
    let (b, clock, _) = build(config);
    b.open_for(secs(5));
    clock.advance(secs(5));
    // The probe fails: the first opening by the rules takes the first duration.
    b.try_acquire().unwrap().record(Outcome::transient());
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.retry_after(), Some(secs(1)));
}

#[test]
fn a_half_open_rejection_says_when_the_first_probe_lease_ends() {
    let (b, clock, _) = build(simple().max_probe_wait(secs(30)));
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    clock.advance(secs(10));
    let p1 = b.try_acquire().unwrap();
    clock.advance(secs(4));
    let p2 = b.try_acquire().unwrap();
    // Both slots taken: a slot frees at the latest when the first lease ends.
    let r = b.try_acquire().unwrap_err();
    assert_eq!(
        (r.state(), r.retry_after()),
        (State::HalfOpen, Some(secs(26)))
    );
    // Again without the lock, a second later.
    clock.advance(secs(1));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.retry_after(), Some(secs(25)));
    assert_eq!(r.rejection().retry_after(), Some(secs(25)));
    drop((p1, p2));
}

#[test]
fn a_rejection_says_why_the_breaker_opened() {
    let (b, clock, _) = build(simple());
    assert_eq!(b.last_opening(), None);
    for _ in 0..3 {
        run(&b, Outcome::transient());
    }
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.opened_by(), Some(Reason::ConsecutiveFailures));
    let opening = b.last_opening().unwrap();
    assert_eq!(opening.reason, Reason::ConsecutiveFailures);
    assert_eq!((opening.calls, opening.failures), (3, 3));
    assert_eq!(opening.consecutive_failures, 3);
    assert_eq!(opening.failure_rate, 100.0);
    assert_eq!(b.snapshot().last_opening, Some(opening));
    // Half-open with its slots taken: still the reason of the opening.
    clock.advance(secs(10));
    let _probes = (b.try_acquire().unwrap(), b.try_acquire().unwrap());
    assert_eq!(
        b.try_acquire().unwrap_err().opened_by(),
        Some(Reason::ConsecutiveFailures)
    );
    b.force_open();
    assert_eq!(
        b.try_acquire().unwrap_err().opened_by(),
        Some(Reason::ForcedOpen)
    );
    b.open_for(secs(1));
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.opened_by(), Some(Reason::OpenedFor));
    assert!(r.to_string().contains("opened_for"), "{r}");
}

#[test]
fn a_rejection_reports_the_rate_rule_that_fired_with_its_figures() {
    let config = BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(WindowConfig::Count { size: 10 })
        .minimum_calls(4);
    let (b, _, _) = build(config);
    for outcome in [
        Outcome::Success,
        Outcome::transient(),
        Outcome::Success,
        Outcome::transient(),
    ] {
        run(&b, outcome);
    }
    assert_eq!(
        b.try_acquire().unwrap_err().opened_by(),
        Some(Reason::FailureRate)
    );
    let opening = b.last_opening().unwrap();
    assert_eq!(
        (opening.calls, opening.failures, opening.failure_rate),
        (4, 2, 50.0)
    );
}
