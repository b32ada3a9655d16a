//! Settings that a pipeline refuses, or accepts with a warning.
#![cfg(all(feature = "clock", feature = "classify"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::Pipeline;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Every warning event, as its fields rendered as `name=value`.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn warnings_of<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let warnings = Warnings::default();
    let r = tracing::subscriber::with_default(warnings.clone(), f);
    let seen = warnings.0.lock().unwrap().clone();
    (r, seen)
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn an_empty_pipeline_name_is_refused() {
    for name in ["", "   ", "\t"] {
        let e = Pipeline::builder(name).build().unwrap_err();
        assert_eq!(e.field(), "name");
        assert_eq!(
            e.to_string(),
            format!("`name` is {name:?}, allowed a name that is not empty or only whitespace")
        );
    }
    assert_eq!(Pipeline::builder("db").build().unwrap().name(), "db");
}

#[test]
fn an_attempt_timeout_longer_than_the_total_timeout_is_accepted_with_a_warning() {
    let (built, warnings) = warnings_of(|| {
        Pipeline::builder("db")
            .attempt_timeout(3000 * MS)
            .total_timeout(2000 * MS)
            .build()
    });
    let p = built.unwrap();
    assert_eq!(p.attempt_timeout(), Some(3000 * MS));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    for part in [
        "pipeline=db ",
        "attempt_timeout=3s",
        "total_timeout=2s",
        "the total timeout bounds every attempt",
    ] {
        assert!(w.contains(part), "{part} not in {w}");
    }
}

#[test]
fn an_attempt_timeout_within_the_total_timeout_warns_nothing() {
    for attempt in [2000 * MS, 300 * MS] {
        let (built, warnings) = warnings_of(|| {
            Pipeline::builder("db")
                .attempt_timeout(attempt)
                .total_timeout(2000 * MS)
                .build()
        });
        built.unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[cfg(feature = "config")]
mod config {
    use super::*;
    use palisade::config::{Registry, RegistryConfig};

    #[test]
    fn an_empty_pipeline_name_in_a_configuration_is_refused() {
        for text in [
            "[pipelines.\"\"]\n",
            "[pipelines.\" \"]\nattempt_timeout = \"1s\"\n",
        ] {
            let e = RegistryConfig::from_toml(text)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(e.field(), "pipelines", "{e}");
            assert!(e.to_string().contains("not empty"), "{e}");
            assert_eq!(Registry::from_toml(text).unwrap_err(), e);
        }
        let e = Registry::from_json(r#"{"pipelines": {"": {}}}"#).unwrap_err();
        assert_eq!(e.field(), "pipelines");
        // And on reload: refused, the old configuration keeps serving.
        let registry = Registry::from_toml("[pipelines.db]\n").unwrap();
        let e = registry
            .reload_toml("[pipelines.db]\n[pipelines.\"\"]\n")
            .unwrap_err();
        assert_eq!(e.field(), "pipelines");
        assert_eq!(registry.names(), ["db"]);
    }

    #[test]
    fn a_configured_attempt_timeout_longer_than_the_total_timeout_warns_naming_the_pipeline() {
        let (registry, warnings) = warnings_of(|| {
            Registry::from_toml(
                "[pipelines.billing]\ntotal_timeout = \"1s\"\nattempt_timeout = \"5s\"\n",
            )
        });
        registry.unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("pipeline=billing "), "{warnings:?}");
    }
}
