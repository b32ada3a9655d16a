//! The throttle's cap on its refusal probability and its minimum request count.

use std::time::Duration;

use palisade_clock::ManualClock;
use palisade_limit::throttle::{REFRESH, Throttle, ThrottleConfig};

fn refusing_everything(config: ThrottleConfig, calls: u32) -> (Throttle<ManualClock>, u32) {
    let clock = ManualClock::new();
    let t = Throttle::with_seed(config, clock.clone(), 3).unwrap();
    let mut local = 0;
    for _ in 0..calls {
        match t.check() {
            Ok(()) => t.record_rejected(),
            Err(_) => local += 1,
        }
        clock.advance(Duration::from_millis(5));
    }
    (t, local)
}

#[test]
fn the_refusal_probability_stops_at_its_cap() {
    let (t, local) = refusing_everything(ThrottleConfig::default(), 10_000);
    let s = t.snapshot();
    assert_eq!(s.probability, 0.9);
    // About one call in ten still reaches the dependency, so its recovery shows.
    assert!((8_800..=9_100).contains(&local), "{local} refused locally");
    assert!(s.requests - s.local_rejections > 900);
}

#[test]
fn a_cap_of_one_lets_the_throttle_refuse_nearly_everything() {
    let mut config = ThrottleConfig::default();
    config.max_probability = 1.0;
    let (t, local) = refusing_everything(config, 10_000);
    assert!(t.snapshot().probability > 0.99);
    assert!(local > 9_800, "{local} refused locally");
}

#[test]
fn below_the_minimum_request_count_nothing_is_refused() {
    let clock = ManualClock::new();
    let t = Throttle::with_seed(ThrottleConfig::default(), clock.clone(), 3).unwrap();
    for _ in 0..9 {
        t.check().unwrap();
        t.record_rejected();
        clock.advance(REFRESH);
    }
    // Nine requests, none accepted: too few to judge the dependency by.
    assert_eq!(t.snapshot().requests, 9);
    assert_eq!(t.snapshot().probability, 0.0);
    t.check().unwrap();
    t.record_rejected();
    // From the tenth on it judges: (10 − 0) / 11, held to the cap of 0.9.
    assert_eq!(t.snapshot().probability, 0.9);
}

#[test]
fn a_minimum_of_zero_judges_from_the_first_request() {
    let mut config = ThrottleConfig::default();
    config.min_requests = 0;
    let t = Throttle::with_seed(config, ManualClock::new(), 3).unwrap();
    t.record_rejected();
    assert_eq!(t.snapshot().probability, 0.5);
}

#[test]
fn cap_and_minimum_are_validated_with_the_field_and_range() {
    let mut c = ThrottleConfig::default();
    c.max_probability = 1.5;
    assert_eq!(
        Throttle::new(c.clone()).unwrap_err().to_string(),
        "`max_probability` is 1.5, allowed 0..=1"
    );
    c.max_probability = f64::NAN;
    assert_eq!(Throttle::new(c).unwrap_err().field(), "max_probability");
    let mut c = ThrottleConfig::default();
    c.min_requests = 2_000_000;
    assert_eq!(
        Throttle::new(c).unwrap_err().to_string(),
        "`min_requests` is 2000000, allowed 0..=1000000"
    );
}

#[test]
fn cap_and_minimum_have_defaults_in_serde_form_and_reload() {
    let c: ThrottleConfig = toml::from_str("k = 2.0").unwrap();
    assert_eq!((c.max_probability, c.min_requests), (0.9, 10));
    let c: ThrottleConfig = toml::from_str("max_probability = 0.5\nmin_requests = 100").unwrap();
    assert_eq!((c.max_probability, c.min_requests), (0.5, 100));

    let (t, _) = refusing_everything(ThrottleConfig::default(), 1000);
    assert_eq!(t.snapshot().probability, 0.9);
    let mut lower = ThrottleConfig::default();
    lower.max_probability = 0.5;
    t.reconfigure(&lower).unwrap();
    assert_eq!(t.snapshot().probability, 0.5);
    lower.min_requests = 1_000_000;
    t.reconfigure(&lower).unwrap();
    assert_eq!(t.snapshot().probability, 0.0);
}
