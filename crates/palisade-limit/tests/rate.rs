//! The GCRA rate limiter: against a naive model, in virtual time, under threads,
//! hot reload and configuration.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_classify::Strategy;
use palisade_clock::{Clock, ManualClock, Timestamp};
use palisade_limit::{RateLimiter, RateLimiterConfig};
use proptest::prelude::*;

fn manual(config: RateLimiterConfig) -> RateLimiter<ManualClock> {
    // Start away from zero so that "before the first call" has room.
    let clock = ManualClock::starting_at(Timestamp::from_duration(Duration::from_secs(1000)));
    RateLimiter::with_clock(config, clock).unwrap()
}

#[test]
fn a_burst_then_the_steady_rate() {
    let l = manual(RateLimiterConfig::per_second(10).with_burst(3));
    for _ in 0..3 {
        l.check().unwrap();
    }
    let e = l.check().unwrap_err();
    assert_eq!(e.retry_after(), Duration::from_millis(100));
    let r = e.rejection();
    assert_eq!(r.strategy(), Strategy::RateLimiter);
    assert_eq!(r.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(e.to_string(), "rate limited: try again in 100ms");

    l.clock().advance(Duration::from_millis(99));
    assert_eq!(
        l.check().unwrap_err().retry_after(),
        Duration::from_millis(1)
    );
    l.clock().advance(Duration::from_millis(1));
    l.check().unwrap();
    assert!(l.check().is_err());
    // A quiet spell refills the burst, and no more.
    l.clock().advance(Duration::from_secs(60));
    assert_eq!(l.snapshot().available, 3);
    for _ in 0..3 {
        l.check().unwrap();
    }
    assert!(l.check().is_err());
    assert_eq!(l.snapshot().rejected, 4);
    assert_eq!(l.snapshot().available, 0);
}

#[test]
fn threads_share_one_budget() {
    let l = manual(RateLimiterConfig::per_second(100));
    let passed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let l = l.clone();
            let passed = passed.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if l.check().is_ok() {
                        passed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The clock stood still: exactly the burst passed.
    assert_eq!(passed.load(Ordering::Relaxed), 100);
}

#[tokio::test(start_paused = true)]
async fn until_ready_paces_calls_in_virtual_time() {
    let l = RateLimiter::new(RateLimiterConfig::per_second(20).with_burst(5)).unwrap();
    assert!(
        !l.snapshot().precise_clock || l.config().emission_interval() < Duration::from_millis(1)
    );
    let clock = *l.clock();
    let start = clock.now();
    for _ in 0..25 {
        l.until_ready().await;
    }
    // 5 at once, then 20 more at 50 ms each.
    assert_eq!(clock.now() - start, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn until_ready_timeout_gives_up_without_sleeping() {
    let l = RateLimiter::new(RateLimiterConfig::per_second(1).with_burst(1)).unwrap();
    let clock = *l.clock();
    l.check().unwrap();
    let start = clock.now();
    let e = l
        .until_ready_timeout(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(e.retry_after(), Duration::from_secs(1));
    assert_eq!(clock.now(), start, "it knew it could not make it");
    l.until_ready_timeout(Duration::from_secs(1)).await.unwrap();
    assert_eq!(clock.now() - start, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_wait_takes_nothing() {
    let l = RateLimiter::new(RateLimiterConfig::per_second(10).with_burst(1)).unwrap();
    l.check().unwrap();
    let r = tokio::time::timeout(Duration::from_millis(50), l.until_ready()).await;
    assert!(r.is_err());
    tokio::time::advance(Duration::from_millis(50)).await;
    l.check().unwrap();
}

#[test]
fn a_narrow_burst_at_a_fast_rate_reads_the_precise_clock() {
    let tight = RateLimiter::new(RateLimiterConfig::per_second(100_000).with_burst(1)).unwrap();
    // Where `recent()` is exact (resolution zero) either reading is exact.
    if !palisade_clock::recent_resolution().is_zero() {
        assert!(tight.snapshot().precise_clock);
    }
    let wide = RateLimiter::new(RateLimiterConfig::per_second(100_000)).unwrap();
    assert!(!wide.snapshot().precise_clock);
}

#[test]
fn reconfigure_changes_the_rate_of_a_live_limiter() {
    let l = manual(RateLimiterConfig::per_second(1).with_burst(1));
    l.check().unwrap();
    assert_eq!(l.check().unwrap_err().retry_after(), Duration::from_secs(1));
    let e = l
        .reconfigure(&RateLimiterConfig::per_second(0))
        .unwrap_err();
    assert_eq!(e.field(), "rate");
    l.reconfigure(&RateLimiterConfig::per_second(1000).with_burst(10))
        .unwrap();
    assert_eq!(l.config().effective_burst(), 10);
    // The call already made still counts, against the new schedule.
    l.clock().advance(Duration::from_secs(1));
    for _ in 0..10 {
        l.check().unwrap();
    }
    assert!(l.check().is_err());
}

#[test]
fn configuration_errors_name_the_field_and_range() {
    let cases = [
        (
            RateLimiterConfig::per_second(0),
            "`rate` is 0, allowed 1..=1000000000",
        ),
        (
            RateLimiterConfig::new(2000, Duration::from_micros(1)),
            "`rate` is 2000, allowed 1..=1000",
        ),
        (
            RateLimiterConfig::new(1, Duration::ZERO),
            "`period` is 0s, allowed 1us..=86400s",
        ),
        (
            RateLimiterConfig::per_second(5).with_burst(0),
            "`burst` is 0, allowed 1..=1000000000",
        ),
    ];
    for (config, message) in cases {
        assert_eq!(RateLimiter::new(config).unwrap_err().to_string(), message);
    }
    let e = RateLimiter::new(
        RateLimiterConfig::new(1, Duration::from_secs(86400)).with_burst(1_000_000_000),
    )
    .unwrap_err();
    assert_eq!(e.field(), "burst");
    let config: RateLimiterConfig = toml::from_str("rate = 5\nperiod = \"2s\"").unwrap();
    assert_eq!(config, RateLimiterConfig::new(5, Duration::from_secs(2)));
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(json, r#"{"rate":5,"period":"2s","burst":null}"#);
    assert!(serde_json::from_str::<RateLimiterConfig>(r#"{"rate":-1}"#).is_err());
}

/// The naive model: a continuous-state leaky bucket (ITU-T I.371), in u128
/// nanoseconds, with nothing shared or clever.
#[derive(Clone, Debug)]
struct LeakyBucket {
    interval: u128,
    tolerance: u128,
    level: u128,
    last: u128,
}

impl LeakyBucket {
    fn new(interval: u128, burst: u128) -> Self {
        LeakyBucket {
            interval,
            tolerance: interval * (burst - 1),
            level: 0,
            last: 0,
        }
    }

    fn check(&mut self, t: u128) -> bool {
        let drained = self.level.saturating_sub(t - self.last.min(t));
        if drained > self.tolerance {
            return false;
        }
        self.level = drained + self.interval;
        self.last = t;
        true
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every decision and every retry-after of the GCRA matches the model, and
    /// every retry-after is the exact earliest time a call would pass.
    #[test]
    fn gcra_matches_a_leaky_bucket(
        rate in 1u32..2000,
        period_ms in 1u64..5000,
        burst in 1u32..20,
        steps in proptest::collection::vec(0u64..2_000_000_000, 1..200),
    ) {
        let config = RateLimiterConfig::new(rate, Duration::from_millis(period_ms)).with_burst(burst);
        prop_assume!(config.validate().is_ok());
        let interval = config.emission_interval().as_nanos();
        let clock = ManualClock::new();
        let limiter = RateLimiter::with_clock(config, clock.clone()).unwrap();
        let mut model = LeakyBucket::new(interval, u128::from(burst));
        for step in steps {
            // Many calls at the same instant, some spread out.
            let step = if step % 3 == 0 { 0 } else { step % (interval as u64 * 3 + 1) };
            clock.advance(Duration::from_nanos(step));
            let t = u128::from(clock.now().as_nanos());
            let expected = model.check(t);
            match limiter.check() {
                Ok(()) => prop_assert!(expected, "the limiter passed a call the model refused at {t}"),
                Err(e) => {
                    prop_assert!(!expected, "the limiter refused a call the model passed at {t}");
                    let wait = e.retry_after().as_nanos();
                    prop_assert!(wait > 0);
                    let mut later = model.clone();
                    prop_assert!(later.check(t + wait), "not ready after the retry-after");
                    let mut earlier = model.clone();
                    prop_assert!(!earlier.check(t + wait - 1), "ready before the retry-after");
                }
            }
        }
    }

    /// Over any run, passes never exceed the burst plus the steady rate.
    #[test]
    fn passes_stay_within_burst_plus_rate(
        rate in 1u32..100,
        burst in 1u32..10,
        steps in proptest::collection::vec(0u64..50_000_000, 1..300),
    ) {
        let config = RateLimiterConfig::new(rate, Duration::from_secs(1)).with_burst(burst);
        let interval = u128::from(config.emission_interval().as_nanos() as u64);
        let clock = ManualClock::new();
        let limiter = RateLimiter::with_clock(config, clock.clone()).unwrap();
        let mut passed_at = Vec::new();
        for step in steps {
            clock.advance(Duration::from_nanos(step));
            if limiter.check().is_ok() {
                passed_at.push(u128::from(clock.now().as_nanos()));
            }
        }
        for (i, &a) in passed_at.iter().enumerate() {
            for (j, &b) in passed_at.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u128;
                prop_assert!(count <= u128::from(burst) + (b - a) / interval);
            }
        }
    }
}
