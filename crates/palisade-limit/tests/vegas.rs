#![allow(clippy::disallowed_methods)] // a test is the root: it may build its own clocks

//! The Vegas limit, step by step on a manual clock.

use std::time::Duration;

use palisade_clock::ManualClock;
use palisade_limit::adaptive::{AdaptiveConfig, AdaptiveLimiter, VegasConfig};

fn vegas(initial: u32, min: u32, max: u32) -> AdaptiveLimiter<ManualClock> {
    let mut c = VegasConfig::default();
    c.initial_limit = initial;
    c.min_limit = min;
    c.max_limit = max;
    AdaptiveLimiter::with_clock(AdaptiveConfig::Vegas(c), ManualClock::new()).unwrap()
}

/// Takes `n` permits, lets `rtt` pass, reports them all as successes.
fn round(l: &AdaptiveLimiter<ManualClock>, n: u32, rtt: Duration) {
    let permits: Vec<_> = (0..n).map(|_| l.try_acquire().unwrap()).collect();
    l.clock().advance(rtt);
    for p in permits {
        p.success();
    }
}

#[test]
fn grows_while_nothing_queues() {
    let l = vegas(10, 1, 100);
    // The first sample sets the no-load latency.
    round(&l, 10, Duration::from_millis(10));
    let after_first = l.limit();
    assert!(after_first > 10, "{after_first}");
    // Same latency: nothing queues, the limit keeps growing by beta × log10.
    round(&l, after_first, Duration::from_millis(10));
    assert!(l.limit() > after_first, "{} after {after_first}", l.limit());
}

#[test]
fn shrinks_when_latency_shows_a_queue() {
    let l = vegas(50, 1, 100);
    round(&l, 1, Duration::from_millis(10)); // no-load latency 10 ms
    assert_eq!(l.limit(), 50);
    // Twice as slow with 50 in flight: half of them queue, far above beta × log10.
    let permits: Vec<_> = (0..50).map(|_| l.try_acquire().unwrap()).collect();
    l.clock().advance(Duration::from_millis(20));
    for p in permits {
        p.success();
    }
    let limit = l.limit();
    assert!(limit < 50, "{limit}");
    assert!(limit >= 1);
}

#[test]
fn holds_between_alpha_and_beta() {
    // limit 100: log10 = 2, alpha × log = 6, beta × log = 12. A queue of 10 holds.
    let l = vegas(100, 1, 200);
    round(&l, 1, Duration::from_millis(9));
    let permits: Vec<_> = (0..100).map(|_| l.try_acquire().unwrap()).collect();
    l.clock().advance(Duration::from_millis(10)); // queue = ceil(100 × 0.1) = 10
    permits.into_iter().next_back().unwrap().success();
    assert_eq!(l.limit(), 100);
}

#[test]
fn a_drop_shrinks_by_log10() {
    let l = vegas(100, 1, 200);
    round(&l, 1, Duration::from_millis(10));
    let permits: Vec<_> = (0..100).map(|_| l.try_acquire().unwrap()).collect();
    l.clock().advance(Duration::from_millis(10));
    // The last one started with all hundred in flight.
    let mut permits = permits.into_iter().rev();
    permits.next().unwrap().dropped();
    assert_eq!(l.limit(), 98);
}

#[test]
fn does_not_move_when_the_caller_is_the_bottleneck() {
    let l = vegas(100, 1, 200);
    round(&l, 1, Duration::from_millis(10));
    // Ten in flight of a hundred: slow or not, the limit holds.
    round(&l, 10, Duration::from_millis(50));
    assert_eq!(l.limit(), 100);
}

#[test]
fn probes_the_no_load_latency_again() {
    let run = |probe_multiplier: u32| {
        let mut c = VegasConfig::default();
        c.initial_limit = 10;
        c.min_limit = 1;
        c.max_limit = 100;
        c.probe_multiplier = probe_multiplier;
        let l = AdaptiveLimiter::with_clock(AdaptiveConfig::Vegas(c), ManualClock::new()).unwrap();
        round(&l, 1, Duration::from_millis(1));
        // The dependency is now 50 times slower for good, and not loaded.
        for _ in 0..40 {
            let n = l.limit();
            round(&l, n, Duration::from_millis(50));
        }
        l.limit()
    };
    // Compared for ever with its old best, it looks overloaded: it shrinks until
    // its whole (small) limit looks like queue, beta × log10 = 6.
    assert_eq!(run(100_000), 6);
    // Measured afresh, the new latency is the baseline and the limit grows again.
    let probed = run(1);
    assert!(probed > 10, "{probed}");
}

#[test]
fn configuration_errors_name_the_field() {
    let mut c = VegasConfig::default();
    c.beta = 2.0; // below alpha (3)
    let e = AdaptiveConfig::Vegas(c).validate().unwrap_err();
    assert_eq!(e.field(), "beta");
    let mut c = VegasConfig::default();
    c.max_limit = 0;
    assert_eq!(
        AdaptiveConfig::Vegas(c).validate().unwrap_err().field(),
        "max_limit"
    );
    let mut c = VegasConfig::default();
    c.smoothing = f64::NAN;
    assert_eq!(c.validate().unwrap_err().field(), "smoothing");
    let config: AdaptiveConfig =
        toml::from_str("algorithm = \"vegas\"\nalpha = 2\nbeta = 4\nmax_limit = 500").unwrap();
    let AdaptiveConfig::Vegas(v) = &config else {
        panic!("{config:?}")
    };
    assert_eq!((v.alpha, v.beta, v.max_limit), (2.0, 4.0, 500));
    assert!(config.validate().is_ok());
}
