//! Every transition is a tracing event: opening at WARN, closing at INFO.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_breaker::{Breaker, BreakerConfig, OpenDuration};
use palisade_classify::Outcome;
use palisade_clock::ManualClock;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Level, breaker name, state entered, reason.
type Seen = (Level, String, String, String);

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

#[derive(Default)]
struct Fields {
    to: String,
    breaker: String,
    reason: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "to" => self.to = value.to_owned(),
            "breaker" => self.breaker = value.to_owned(),
            "reason" => self.reason = value.to_owned(),
            _ => {}
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "palisade::breaker" {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), f.breaker, f.to, f.reason));
    }
}

#[test]
fn transitions_are_traced_at_their_levels() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    tracing::subscriber::with_default(subscriber, || {
        let clock = ManualClock::new();
        let b = Breaker::builder(
            BreakerConfig::default()
                .failure_rate_threshold(None)
                .consecutive_failures(Some(1))
                .open(OpenDuration::fixed(Duration::from_secs(1)))
                .half_open_probes(1),
        )
        .clock(clock.clone())
        .name("db")
        .build()
        .unwrap();
        b.try_acquire().unwrap().record(Outcome::Permanent);
        clock.advance(Duration::from_secs(1));
        b.try_acquire().unwrap().record(Outcome::Success);
        b.force_open();
    });
    let seen = capture.0.lock().unwrap().clone();
    let expected = [
        (Level::WARN, "open", "consecutive_failures"),
        (Level::INFO, "half_open", "open_duration_elapsed"),
        (Level::INFO, "closed", "probes_succeeded"),
        (Level::WARN, "forced_open", "forced_open"),
    ];
    assert_eq!(seen.len(), expected.len(), "{seen:?}");
    for ((level, breaker, to, reason), (l, t, r)) in seen.iter().zip(expected) {
        assert_eq!((*level, to.as_str(), reason.as_str()), (l, t, r));
        assert_eq!(breaker, "db");
    }
}
