//! Adaptive limits and the throttle: reports, algorithms step by step,
//! configuration.

use std::time::Duration;

use palisade_classify::{Outcome, Rejection, Strategy};
use palisade_clock::ManualClock;
use palisade_limit::adaptive::{AdaptiveConfig, AdaptiveLimiter, AimdConfig, Gradient2Config};
use palisade_limit::throttle::{Throttle, ThrottleConfig};

fn aimd(initial: u32, min: u32, max: u32) -> AdaptiveLimiter<ManualClock> {
    let mut c = AimdConfig::default();
    c.initial_limit = initial;
    c.min_limit = min;
    c.max_limit = max;
    AdaptiveLimiter::with_clock(AdaptiveConfig::Aimd(c), ManualClock::new()).unwrap()
}

#[test]
fn aimd_adds_one_when_busy_and_backs_off_on_drops() {
    let l = aimd(4, 1, 10);
    // One call of four in flight: the caller is the bottleneck, no increase.
    l.try_acquire().unwrap().success();
    assert_eq!(l.limit(), 4);
    // Two in flight (half the limit): +1.
    let a = l.try_acquire().unwrap();
    let b = l.try_acquire().unwrap();
    b.success();
    assert_eq!(l.limit(), 5);
    a.dropped();
    assert_eq!(l.limit(), 4); // 5 × 0.9 = 4.5, rounded down
    let s = l.snapshot();
    assert_eq!((s.samples, s.drops, s.in_flight), (3, 1, 0));
}

#[test]
fn aimd_counts_slow_calls_as_drops() {
    let l = aimd(10, 1, 10);
    let permits: Vec<_> = (0..5).map(|_| l.try_acquire().unwrap()).collect();
    l.clock().advance(Duration::from_secs(6)); // past the 5 s timeout
    let mut permits = permits.into_iter();
    permits.next().unwrap().success();
    assert_eq!(l.limit(), 9);
    assert_eq!(
        l.snapshot().drops,
        0,
        "a slow success is not reported as a drop"
    );
    permits.next().unwrap().ignore();
    drop(permits); // dropped without a report: no samples
    let s = l.snapshot();
    assert_eq!((s.samples, s.in_flight), (1, 0));
}

#[test]
fn the_limit_refuses_with_the_adaptive_strategy() {
    let l = aimd(2, 1, 10);
    let _a = l.try_acquire().unwrap();
    let _b = l.try_acquire().unwrap();
    let e = l.try_acquire().unwrap_err();
    assert_eq!(e.limit(), 2);
    assert_eq!(e.rejection().strategy(), Strategy::AdaptiveLimit);
    assert_eq!(e.to_string(), "adaptive concurrency limit of 2 reached");
    assert_eq!(l.snapshot().rejected, 1);
}

#[test]
fn outcomes_map_to_samples() {
    let l = aimd(10, 1, 10);
    let p = l.try_acquire().unwrap();
    p.record(&Outcome::transient());
    assert_eq!(l.snapshot().drops, 1);
    let p = l.try_acquire().unwrap();
    p.record(&Outcome::Permanent);
    let p = l.try_acquire().unwrap();
    p.record(&Outcome::Ignored);
    let p = l.try_acquire().unwrap();
    p.record(&Outcome::Rejected(Rejection::new(Strategy::RetryBudget)));
    let s = l.snapshot();
    assert_eq!((s.samples, s.drops), (2, 1));
}

#[test]
fn gradient2_shrinks_when_latency_climbs_and_grows_when_it_falls() {
    let clock = ManualClock::new();
    let mut config = Gradient2Config::default();
    config.initial_limit = 10;
    config.min_limit = 2;
    config.max_limit = 100;
    let l = AdaptiveLimiter::with_clock(AdaptiveConfig::Gradient2(config), clock.clone()).unwrap();
    let call = |ms: u64| {
        // Keep the limiter busy (at least half the limit in flight).
        let permits: Vec<_> = (0..l.limit())
            .filter_map(|_| l.try_acquire().ok())
            .collect();
        clock.advance(Duration::from_millis(ms));
        for p in permits {
            p.success();
        }
    };
    for _ in 0..20 {
        call(10);
    }
    let grown = l.limit();
    assert!(
        grown > 10,
        "steady low latency lets the limit grow: {grown}"
    );
    for _ in 0..5 {
        call(40);
    }
    let shrunk = l.limit();
    assert!(
        shrunk < grown,
        "queueing shrinks the limit: {grown} -> {shrunk}"
    );
}

#[test]
fn reconfigure_restarts_the_algorithm() {
    let l = aimd(10, 1, 10);
    let mut c = AimdConfig::default();
    c.min_limit = 0;
    let e = l.reconfigure(&AdaptiveConfig::Aimd(c)).unwrap_err();
    assert_eq!(e.to_string(), "`min_limit` is 0, allowed 1..=200");
    let mut c = AimdConfig::default();
    c.initial_limit = 30;
    c.min_limit = 30;
    l.reconfigure(&AdaptiveConfig::Aimd(c)).unwrap();
    assert_eq!(l.limit(), 30);
}

#[test]
fn adaptive_configuration() {
    let cases: [(&str, &str); 5] = [
        (
            r#"{"algorithm":"aimd","backoff_ratio":1.5}"#,
            "`backoff_ratio` is 1.5, allowed 0.5..=0.99",
        ),
        (
            r#"{"algorithm":"aimd","initial_limit":5}"#,
            "`initial_limit` is 5, allowed 20..=200",
        ),
        (
            r#"{"algorithm":"gradient2","smoothing":0}"#,
            "`smoothing` is 0.0, allowed 0.01..=1",
        ),
        (
            r#"{"algorithm":"gradient2","max_limit":0}"#,
            "`max_limit` is 0, allowed 1..=1000000",
        ),
        (
            r#"{"algorithm":"gradient2","long_window":5}"#,
            "`long_window` is 5, allowed 10..=100000",
        ),
    ];
    for (json, message) in cases {
        let config: AdaptiveConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.validate().unwrap_err().to_string(), message);
        assert!(AdaptiveLimiter::new(config).is_err());
    }
    assert!(serde_json::from_str::<AdaptiveConfig>(r#"{"algorithm":"bbr"}"#).is_err());
    let config: AdaptiveConfig = toml::from_str("algorithm = \"aimd\"\ntimeout = \"2s\"").unwrap();
    let AdaptiveConfig::Aimd(aimd) = &config else {
        panic!("aimd")
    };
    assert_eq!(aimd.timeout, Duration::from_secs(2));
    let text = serde_json::to_string(&config).unwrap();
    assert_eq!(
        serde_json::from_str::<AdaptiveConfig>(&text).unwrap(),
        config
    );
}

#[test]
fn the_throttle_refuses_nothing_while_the_dependency_accepts() {
    let t = Throttle::with_seed(ThrottleConfig::default(), ManualClock::new(), 1).unwrap();
    for _ in 0..10_000 {
        t.check().unwrap();
        t.record_accepted();
    }
    let s = t.snapshot();
    assert_eq!(
        (s.requests, s.accepts, s.local_rejections),
        (10_000, 10_000, 0)
    );
    assert_eq!(s.probability, 0.0);
}

#[test]
fn the_throttle_probability_is_the_sre_formula() {
    let clock = ManualClock::new();
    let t = Throttle::with_seed(ThrottleConfig::default(), clock.clone(), 1).unwrap();
    // 100 requests, 20 accepted: (100 − 2 × 20) / 101.
    for i in 0..100 {
        if i < 20 {
            t.record_accepted();
        } else {
            t.record(&Outcome::transient());
        }
    }
    let s = t.snapshot();
    assert_eq!((s.requests, s.accepts), (100, 20));
    assert!((s.probability - 60.0 / 101.0).abs() < 1e-12);
    let e = loop {
        if let Err(e) = t.check() {
            break e;
        }
        t.record_rejected();
    };
    assert_eq!(e.rejection().strategy(), Strategy::Throttle);
    assert!(e.probability() > 0.5);
    // Two minutes later the window has forgotten it all.
    clock.advance(Duration::from_secs(121));
    t.check().unwrap();
    assert_eq!(t.snapshot().probability, 0.0);
}

#[test]
fn throttle_configuration() {
    let t = Throttle::with_seed(ThrottleConfig::default(), ManualClock::new(), 1).unwrap();
    let mut c = ThrottleConfig::default();
    c.k = 0.5;
    assert_eq!(
        Throttle::new(c.clone()).unwrap_err().to_string(),
        "`k` is 0.5, allowed 1..=10"
    );
    c.k = 1.5;
    t.reconfigure(&c).unwrap();
    c.window = Duration::from_secs(60);
    assert_eq!(t.reconfigure(&c).unwrap_err().field(), "window");
    let mut c = ThrottleConfig::default();
    c.buckets = 0;
    assert_eq!(Throttle::new(c).unwrap_err().field(), "buckets");
    assert!(toml::from_str::<ThrottleConfig>("K = 2.0").is_err());
}
