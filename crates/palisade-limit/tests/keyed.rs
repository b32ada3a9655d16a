//! The keyed rate limiter: per-key budgets, the memory bound and its eviction.

use std::time::Duration;

use palisade_clock::{Clock, ManualClock};
use palisade_limit::RateLimiterConfig;
use palisade_limit::rate::{KeyedRateLimiter, KeyedRateLimiterConfig};
use proptest::prelude::*;

fn limiter(rate: u32, burst: u32, max_keys: usize) -> KeyedRateLimiter<String, ManualClock> {
    let config = KeyedRateLimiterConfig::new(
        RateLimiterConfig::per_second(rate).with_burst(burst),
        max_keys,
    );
    KeyedRateLimiter::with_clock(config, ManualClock::new()).unwrap()
}

#[test]
fn each_key_has_its_own_budget() {
    let l = limiter(10, 2, 100);
    for _ in 0..2 {
        l.check("a").unwrap();
        l.check("b").unwrap();
    }
    assert_eq!(
        l.check("a").unwrap_err().retry_after(),
        Duration::from_millis(100)
    );
    l.check("c").unwrap();
    l.clock().advance(Duration::from_millis(100));
    l.check("a").unwrap();
    assert!(l.check("a").is_err());
    assert_eq!(l.len(), 3);
    assert_eq!(l.snapshot().rejected, 2);
}

#[test]
fn memory_is_bounded_and_recovered_keys_go_first() {
    let l = limiter(1, 1, 4);
    for i in 0..4 {
        l.check(&format!("old{i}")).unwrap();
    }
    // Every old key recovers after a second; new keys then evict them losslessly.
    l.clock().advance(Duration::from_secs(1));
    for i in 0..4 {
        l.check(&format!("new{i}")).unwrap();
    }
    let s = l.snapshot();
    assert_eq!((s.keys, s.evicted, s.evicted_limited), (4, 4, 0));
    for i in 0..4 {
        assert!(l.check(&format!("new{i}")).is_err(), "new{i} still limited");
    }
}

#[test]
fn when_every_key_is_limited_the_closest_to_recovery_goes() {
    let l = limiter(1, 1, 2);
    l.check("first").unwrap();
    l.clock().advance(Duration::from_millis(500));
    l.check("second").unwrap();
    l.check("third").unwrap(); // evicts "first", which recovers soonest
    let s = l.snapshot();
    assert_eq!((s.keys, s.evicted, s.evicted_limited), (2, 1, 1));
    assert!(l.check("second").is_err());
    assert!(l.check("third").is_err());
    // "first" was forgotten: it gets its burst back early (the documented cost).
    l.check("first").unwrap();
}

#[test]
fn retain_recent_forgets_only_recovered_keys() {
    let l = limiter(1, 1, 100);
    l.check("a").unwrap();
    l.clock().advance(Duration::from_millis(600));
    l.check("b").unwrap();
    l.clock().advance(Duration::from_millis(400));
    l.retain_recent();
    assert_eq!(l.len(), 1);
    assert!(l.check("b").is_err());
    l.check("a").unwrap();
}

#[test]
fn threads_cannot_grow_it_past_the_bound() {
    let l = limiter(1000, 10, 64);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let l = l.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    let _ = l.check(&format!("{t}-{i}"));
                    let _ = l.check("shared");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(l.len() <= 64);
    assert!(l.snapshot().evicted >= 8000 - 64);
}

#[test]
fn reconfigure_and_validation() {
    let l = limiter(1, 1, 2);
    let e = l
        .reconfigure(&KeyedRateLimiterConfig::new(
            RateLimiterConfig::per_second(1),
            0,
        ))
        .unwrap_err();
    assert_eq!(e.to_string(), "`max_keys` is 0, allowed 1..=100000000");
    l.check("a").unwrap();
    assert!(l.check("a").is_err());
    l.reconfigure(&KeyedRateLimiterConfig::new(
        RateLimiterConfig::per_second(1).with_burst(3),
        2,
    ))
    .unwrap();
    l.check("a").unwrap();
    l.check("a").unwrap();
    assert!(l.check("a").is_err());
    let parsed: KeyedRateLimiterConfig =
        toml::from_str("rate = 3\nburst = 1\nmax_keys = 7").unwrap();
    assert_eq!(parsed.limit().effective_burst(), 1);
    assert!(toml::from_str::<KeyedRateLimiterConfig>("max_key = 7").is_err());
}

proptest! {
    /// With room for every key, each key's decisions are exactly those of a direct
    /// limiter of its own.
    #[test]
    fn keys_behave_as_independent_limiters(
        steps in proptest::collection::vec((0u8..4, 0u64..300_000_000), 1..200),
    ) {
        let clock = ManualClock::new();
        let config = RateLimiterConfig::per_second(5).with_burst(2);
        let keyed: KeyedRateLimiter<u8, _> = KeyedRateLimiter::with_clock(
            KeyedRateLimiterConfig::new(config.clone(), 4),
            clock.clone(),
        ).unwrap();
        let direct: Vec<_> = (0..4)
            .map(|_| palisade_limit::RateLimiter::with_clock(config.clone(), clock.clone()).unwrap())
            .collect();
        for (key, step) in steps {
            clock.advance(Duration::from_nanos(step));
            prop_assert_eq!(keyed.check(&key), direct[key as usize].check());
        }
        prop_assert!(keyed.len() <= 4);
        let _ = clock.now();
    }
}

#[test]
fn many_shards_hold_the_bound_too() {
    let config = KeyedRateLimiterConfig::new(RateLimiterConfig::per_second(10), 2_000);
    let l: KeyedRateLimiter<u64, _> =
        KeyedRateLimiter::with_clock(config, ManualClock::new()).unwrap();
    for key in 0..6_000u64 {
        l.check(&key).unwrap();
    }
    assert!(l.len() <= 2_000);
    assert!(
        l.len() >= 1_700,
        "shards evict early only a little: {}",
        l.len()
    );
}

/// Keys `a`, `b`, `c`, `d` checked once each, 100 ms apart, into a limiter of four
/// keys (one shard, so the hand visits them in that order) at one call per second:
/// their limits recover at 1.0 s, 1.1 s, 1.2 s and 1.3 s.
fn four_staggered() -> KeyedRateLimiter<String, ManualClock> {
    let l = limiter(1, 1, 4);
    for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
        if i > 0 {
            l.clock().advance(Duration::from_millis(100));
        }
        l.check(key).unwrap();
    }
    l
}

#[test]
fn a_recovered_key_goes_before_limited_ones_ahead_of_it() {
    let l = four_staggered();
    // At 1.25 s, `a`, `b` and `c` have recovered and `d` has not.
    l.clock().advance(Duration::from_millis(950));
    assert!(l.check("d").is_err());
    for key in ["e", "f", "g"] {
        l.check(key).unwrap();
    }
    let s = l.snapshot();
    assert_eq!((s.keys, s.evicted, s.evicted_limited), (4, 3, 0));
    assert!(l.check("d").is_err(), "the limited key was kept");
    for key in ["e", "f", "g"] {
        assert!(l.check(key).is_err(), "{key} is tracked");
    }
}

#[test]
fn a_refused_key_is_kept_and_the_closest_to_recovery_of_the_others_goes() {
    let l = four_staggered();
    // At 0.3 s nothing has recovered; `a`, closest to recovery, is being refused.
    assert!(l.check("a").is_err());
    l.check("e").unwrap();
    let s = l.snapshot();
    assert_eq!((s.evicted, s.evicted_limited), (1, 1));
    // `b` went (next closest), not `a`.
    assert!(l.check("a").is_err());
    assert!(l.check("c").is_err());
    assert!(l.check("d").is_err());
    assert!(l.check("e").is_err());
    // The evicted key's next check is a new key's: it passes with its burst.
    l.check("b").unwrap();
    assert_eq!(l.snapshot().evicted, 2);
}

#[test]
fn when_every_key_looked_at_was_refused_the_closest_to_recovery_goes() {
    let l = four_staggered();
    for key in ["a", "b", "c", "d"] {
        assert!(l.check(key).is_err());
    }
    l.check("e").unwrap();
    assert_eq!(l.snapshot().evicted_limited, 1);
    // `a` went; the hand cleared the others' marks.
    assert!(l.check("b").is_err());
    l.check("a").unwrap();
    assert_eq!(l.snapshot().evicted, 2);
}

#[test]
fn a_new_key_is_looked_at_last() {
    let l = four_staggered();
    // Nothing recovered, nothing refused: each new key evicts the closest to
    // recovery of the keys at the hand, and the new key is looked at last.
    l.check("e").unwrap(); // evicts `a` (1.0 s)
    l.check("f").unwrap(); // evicts `b` (1.1 s); `e` (1.3 s) is not the closest
    assert!(l.check("c").is_err());
    assert!(l.check("d").is_err());
    assert!(l.check("e").is_err());
    assert!(l.check("f").is_err());
    assert_eq!(l.len(), 4);
}

#[test]
fn hot_limited_keys_keep_their_limits_under_a_flood_of_new_keys() {
    // 10 hot keys, each checked every 100 ms; a new key every millisecond
    // between; one call per 10 s per key: every key, hot or flood, is limited.
    let clock = ManualClock::new();
    let config = RateLimiterConfig::new(1, Duration::from_secs(10)).with_burst(1);
    let keyed: KeyedRateLimiter<u64, _> = KeyedRateLimiter::with_clock(
        KeyedRateLimiterConfig::new(config.clone(), 1_000),
        clock.clone(),
    )
    .unwrap();
    let direct: Vec<_> = (0..10)
        .map(|_| palisade_limit::RateLimiter::with_clock(config.clone(), clock.clone()).unwrap())
        .collect();
    let mut passed = 0;
    for step in 0..100_000u64 {
        clock.advance(Duration::from_millis(1));
        if step % 10 == 0 {
            let hot = (step / 10) % 10;
            let decision = keyed.check(&(u64::MAX - hot));
            assert_eq!(
                decision.is_ok(),
                direct[hot as usize].check().is_ok(),
                "hot key {hot} at step {step}"
            );
            passed += usize::from(decision.is_ok());
        } else {
            keyed.check(&step).unwrap();
        }
        assert!(keyed.len() <= 1_000);
    }
    // 100 s of virtual time: each hot key passed once per 10 s.
    assert_eq!(passed, 10 * 10);
    let s = keyed.snapshot();
    assert!(s.evicted >= 90_000 - 1_000, "{s:?}");
    assert_eq!(
        s.evicted_limited, s.evicted,
        "every flood key was still limited"
    );
}

#[test]
fn a_lowered_bound_evicts_down_to_it_and_eviction_goes_on() {
    let l = limiter(1, 1, 100);
    for i in 0..100 {
        l.check(&format!("k{i}")).unwrap();
    }
    l.reconfigure(&KeyedRateLimiterConfig::new(
        RateLimiterConfig::per_second(1).with_burst(1),
        10,
    ))
    .unwrap();
    assert_eq!(l.len(), 100, "nothing goes before a new key comes");
    l.check("new").unwrap();
    assert_eq!(l.len(), 10);
    assert_eq!(l.snapshot().evicted, 91);
    for i in 0..1_000 {
        l.check(&format!("more{i}")).unwrap();
        assert_eq!(l.len(), 10);
    }
    // After `retain_recent` the ring still matches the keys.
    l.clock().advance(Duration::from_secs(1));
    l.retain_recent();
    assert_eq!(l.len(), 0);
    for i in 0..30 {
        l.check(&format!("again{i}")).unwrap();
    }
    assert_eq!(l.len(), 10);
}
