#![allow(clippy::disallowed_methods)] // a test is the root: it may use any clock
//! The Vegas limit end to end, in manual time.

use std::time::Duration;

use palisade_clock::ManualClock;
use palisade_limit::adaptive::{AdaptiveConfig, AdaptiveLimiter, VegasConfig};

/// A dependency that answers in 10 ms up to 40 calls at once and queues beyond:
/// Vegas settles near 40 from either side, in manual time.
#[test]
fn vegas_finds_the_capacity_of_a_queueing_dependency() {
    let clock = ManualClock::new();
    let mut config = VegasConfig::default();
    config.min_limit = 1;
    let limiter =
        AdaptiveLimiter::with_clock(AdaptiveConfig::Vegas(config), clock.clone()).unwrap();
    let capacity = 40.0;
    for _ in 0..400 {
        // Fill the limit, then finish the calls with the latency of that load.
        let mut permits = Vec::new();
        while let Ok(p) = limiter.try_acquire() {
            permits.push(p);
        }
        let n = permits.len() as f64;
        let latency = 10.0 * (n / capacity).max(1.0);
        clock.advance(Duration::from_micros((latency * 1000.0) as u64));
        for p in permits {
            p.success();
        }
    }
    let limit = limiter.limit();
    assert!((30..=60).contains(&limit), "limit {limit}");
}

#[test]
fn vegas_reads_from_serde() {
    let config: AdaptiveConfig =
        serde_json::from_str(r#"{ "algorithm": "vegas", "alpha": 2, "beta": 4 }"#).unwrap();
    assert!(config.validate().is_ok());
    let bad: AdaptiveConfig =
        serde_json::from_str(r#"{ "algorithm": "vegas", "alpha": 5, "beta": 4 }"#).unwrap();
    assert_eq!(bad.validate().unwrap_err().field(), "alpha");
}
