//! Simulations in virtual time of a dependency with a known capacity: each adaptive
//! limit settles near that capacity, and the throttle's local refusals track the
//! dependency's.
//!
//! The simulations are discrete-event: a manual clock jumps from one event to the
//! next, so a minute of traffic takes milliseconds and every run is the same.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_limit::adaptive::{
    AdaptiveConfig, AdaptiveLimiter, AdaptivePermit, AimdConfig, Gradient2Config,
};
use palisade_limit::throttle::{Throttle, ThrottleConfig};
use palisade_limit::{RateLimiter, RateLimiterConfig};

/// A small deterministic generator (SplitMix64) for service-time jitter.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The limit seen after each event, from `from` on.
struct Observed {
    min: u32,
    max: u32,
    sum: f64,
    n: u64,
}

impl Observed {
    fn mean(&self) -> f64 {
        self.sum / self.n as f64
    }
}

/// A dependency of `capacity` concurrent calls, each taking 20 ms ± 10 %, that
/// refuses at once any call beyond its capacity; callers always have more work
/// than the limit lets through. The capacity follows `capacity_at(t)`.
fn simulate(
    config: AdaptiveConfig,
    duration: Duration,
    capacity_at: impl Fn(Duration) -> u32,
    observe_from: Duration,
) -> Observed {
    let clock = ManualClock::new();
    let limiter = AdaptiveLimiter::with_clock(config, clock.clone()).unwrap();
    let mut rng = Rng(7);
    let mut events: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut calls: HashMap<u64, (AdaptivePermit<ManualClock>, bool)> = HashMap::new();
    let mut busy = 0u32;
    let mut seq = 0u64;
    let start = clock.now();
    let mut observed = Observed {
        min: u32::MAX,
        max: 0,
        sum: 0.0,
        n: 0,
    };
    loop {
        let now = clock.now() - start;
        if now >= duration {
            break;
        }
        // Start calls while the limit allows.
        while let Ok(permit) = limiter.try_acquire() {
            seq += 1;
            let t = clock.now().as_nanos();
            if busy < capacity_at(now) {
                busy += 1;
                let service = 20_000_000.0 * (0.9 + 0.2 * rng.unit());
                events.push(Reverse((t + service as u64, seq)));
                calls.insert(seq, (permit, false));
            } else {
                // Refused at once; the caller learns of it as the next event.
                events.push(Reverse((t, seq)));
                calls.insert(seq, (permit, true));
            }
        }
        let Reverse((at, id)) = events.pop().expect("calls are in flight");
        clock.advance_to(Timestamp::from_nanos(at));
        let (permit, dropped) = calls.remove(&id).unwrap();
        if dropped {
            permit.dropped();
        } else {
            busy -= 1;
            permit.success();
        }
        if clock.now() - start >= observe_from {
            let limit = limiter.limit();
            observed.min = observed.min.min(limit);
            observed.max = observed.max.max(limit);
            observed.sum += f64::from(limit);
            observed.n += 1;
        }
    }
    assert_eq!(
        limiter.snapshot().skipped,
        0,
        "one thread: no report is skipped"
    );
    observed
}

fn assert_settles(name: &str, observed: &Observed, capacity: u32) {
    let (lo, hi) = (f64::from(capacity) * 0.8, f64::from(capacity) * 1.2);
    println!(
        "{name}: limit {}..={} mean {:.1} for capacity {capacity}",
        observed.min,
        observed.max,
        observed.mean()
    );
    assert!(
        f64::from(observed.min) >= lo && f64::from(observed.max) <= hi,
        "{name}: the limit ranged over {}..={}, outside ±20 % of {capacity}",
        observed.min,
        observed.max
    );
}

#[test]
fn aimd_settles_at_the_capacity() {
    let observed = simulate(
        AdaptiveConfig::Aimd(AimdConfig::default()),
        Duration::from_secs(60),
        |_| 40,
        Duration::from_secs(30),
    );
    assert_settles("aimd", &observed, 40);
}

#[test]
fn gradient2_settles_at_the_capacity() {
    let observed = simulate(
        AdaptiveConfig::Gradient2(Gradient2Config::default()),
        Duration::from_secs(60),
        |_| 40,
        Duration::from_secs(30),
    );
    assert_settles("gradient2", &observed, 40);
}

#[test]
fn both_follow_a_capacity_that_halves() {
    let mut aimd = AimdConfig::default();
    aimd.min_limit = 5;
    let mut gradient2 = Gradient2Config::default();
    gradient2.min_limit = 5;
    for (name, config) in [
        ("aimd", AdaptiveConfig::Aimd(aimd)),
        ("gradient2", AdaptiveConfig::Gradient2(gradient2)),
    ] {
        let halves = |t: Duration| if t < Duration::from_secs(30) { 60 } else { 30 };
        let before = simulate(
            config.clone(),
            Duration::from_secs(30),
            halves,
            Duration::from_secs(15),
        );
        assert_settles(name, &before, 60);
        let after = simulate(
            config,
            Duration::from_secs(60),
            halves,
            Duration::from_secs(45),
        );
        assert_settles(name, &after, 30);
    }
}

/// Calls arrive at `demand` per second; the dependency accepts at most
/// `capacity_at(t)` per second (a rate limit of its own) and refuses the rest.
/// Returns, per phase `[from, to)`, the calls refused locally and by the
/// dependency, per second.
fn simulate_throttle(
    demand: u32,
    capacity_at: impl Fn(Duration) -> u32,
    phases: &[(Duration, Duration)],
) -> Vec<(f64, f64)> {
    let clock = ManualClock::new();
    let throttle = Throttle::with_seed(ThrottleConfig::default(), clock.clone(), 42).unwrap();
    let mut capacity = capacity_at(Duration::ZERO);
    let dependency = RateLimiter::with_clock(
        RateLimiterConfig::per_second(capacity).with_burst(10),
        clock.clone(),
    )
    .unwrap();
    let end = phases.iter().map(|p| p.1).max().unwrap();
    let step = Duration::from_secs(1) / demand;
    let mut counts = vec![(0u64, 0u64); phases.len()];
    let mut t = Duration::ZERO;
    while t < end {
        let wanted = capacity_at(t);
        if wanted != capacity {
            capacity = wanted;
            dependency
                .reconfigure(&RateLimiterConfig::per_second(capacity).with_burst(10))
                .unwrap();
        }
        let (local, remote) = match throttle.check() {
            Err(_) => (1, 0),
            Ok(()) => match dependency.check() {
                Ok(()) => {
                    throttle.record_accepted();
                    (0, 0)
                }
                Err(_) => {
                    throttle.record_rejected();
                    (0, 1)
                }
            },
        };
        for (i, (from, to)) in phases.iter().enumerate() {
            if t >= *from && t < *to {
                counts[i].0 += local;
                counts[i].1 += remote;
            }
        }
        clock.advance(step);
        t += step;
    }
    counts
        .iter()
        .zip(phases)
        .map(|(&(local, remote), (from, to))| {
            let secs = (*to - *from).as_secs_f64();
            (local as f64 / secs, remote as f64 / secs)
        })
        .collect()
}

#[test]
fn throttle_refusals_track_the_dependency() {
    let s = Duration::from_secs;
    // Demand 300/s. The dependency takes 400/s, then 100/s from 2 to 8 minutes,
    // then 400/s again.
    let capacity = |t: Duration| if t >= s(120) && t < s(480) { 100 } else { 400 };
    let phases = [(s(60), s(120)), (s(360), s(480)), (s(660), s(720))];
    let rates = simulate_throttle(300, capacity, &phases);
    println!("(local, dependency) refusals per second by phase: {rates:?}");

    // Healthy: nothing refused anywhere.
    assert_eq!(rates[0], (0.0, 0.0));
    // Overloaded, steady state: the client sends about K × accepts = 200/s; the
    // throttle refuses the other 100/s locally, the dependency refuses 100/s.
    let (local, remote) = rates[1];
    assert!((85.0..=115.0).contains(&local), "local refusals {local}/s");
    assert!(
        (85.0..=115.0).contains(&remote),
        "dependency refusals {remote}/s"
    );
    // Recovered, and the overload has left the window: no more local refusals.
    assert_eq!(rates[2], (0.0, 0.0));
}
