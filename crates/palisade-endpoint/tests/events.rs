#![allow(clippy::disallowed_methods)] // a test is the root
//! What the detector reports: every transition to the callback, in order, and
//! (with the `metrics` feature) the counters and the gauge.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_clock::{Clock, ManualClock};
use palisade_endpoint::{EjectReason, Event, OutlierConfig, Outliers};
use palisade_window::OutcomeKind;

fn config() -> OutlierConfig {
    OutlierConfig::default()
        .with_consecutive_failures(Some(2))
        .with_ejection(Duration::from_secs(10), Duration::from_secs(60))
        .with_max_ejected_percent(34.0)
        .with_probation_successes(1)
}

/// Ejects `a`, has `b` refused (one of three may be out), ends the ejection and
/// passes probation.
fn run(clock: &ManualClock, outliers: &Outliers<ManualClock>) {
    let a = outliers.insert("a");
    let b = outliers.insert("b");
    let _c = outliers.insert("c");
    for _ in 0..2 {
        a.record(OutcomeKind::Failure, None, clock.now());
        b.record(OutcomeKind::Failure, None, clock.now());
    }
    clock.advance(Duration::from_secs(10));
    outliers.tick(clock.now());
    a.record(OutcomeKind::Success, None, clock.now());
}

#[test]
fn every_transition_reaches_the_callback() {
    let clock = ManualClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let outliers = Outliers::builder(config())
        .clock(clock.clone())
        .name("users")
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    run(&clock, &outliers);
    let a = "\"a\"".to_owned();
    assert_eq!(
        *events.lock().unwrap(),
        [
            Event::Ejected {
                endpoint: a.clone(),
                reason: EjectReason::ConsecutiveFailures,
                duration: Duration::from_secs(10),
                ejections: 1
            },
            Event::EjectionRefused {
                endpoint: "\"b\"".to_owned(),
                reason: EjectReason::ConsecutiveFailures
            },
            Event::Probation {
                endpoint: a.clone()
            },
            Event::Restored { endpoint: a },
        ]
    );
}

#[cfg(feature = "metrics")]
#[test]
fn transitions_are_counted_through_the_metrics_facade() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let clock = ManualClock::new();
    let outliers = Outliers::builder(config())
        .clock(clock.clone())
        .name("users")
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || run(&clock, &outliers));
    let text = handle.render();
    for line in [
        r#"palisade_endpoint_ejections_total{balancer="users",reason="consecutive_failures"} 1"#,
        r#"palisade_endpoint_ejections_refused_total{balancer="users"} 1"#,
        r#"palisade_endpoint_readmissions_total{balancer="users",to="probation"} 1"#,
        r#"palisade_endpoint_readmissions_total{balancer="users",to="healthy"} 1"#,
        r#"palisade_endpoint_ejected{balancer="users"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
