//! The spans of an execution: one `palisade.execute` per call, with its attempts
//! and outcome, and one `palisade.attempt` inside it per attempt.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(feature = "retry")]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::backoff::Backoff;
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span as the subscriber saw it: its name, its parent and its fields.
#[derive(Clone, Debug, Default)]
struct Seen {
    name: &'static str,
    parent: Option<u64>,
    fields: Vec<(&'static str, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Fields<'a>(&'a mut Vec<(&'static str, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }
}

/// Records every span, the fields recorded on it, and which span was entered when
/// it was made (its parent).
#[derive(Clone, Default)]
struct Spans {
    spans: Arc<Mutex<Vec<Seen>>>,
    events: Arc<Mutex<Vec<Seen>>>,
    stack: Arc<Mutex<Vec<u64>>>,
    next: Arc<AtomicU64>,
}

impl Subscriber for Spans {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut seen = Seen {
            name: attrs.metadata().name(),
            parent: self.stack.lock().unwrap().last().copied(),
            fields: Vec::new(),
        };
        attrs.record(&mut Fields(&mut seen.fields));
        self.spans.lock().unwrap().push(seen);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let seen = &mut spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(&mut seen.fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut seen = Seen {
            name: event.metadata().name(),
            parent: event.parent().map(|id| id.into_u64()),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut seen.fields));
        self.events.lock().unwrap().push(seen);
    }

    fn enter(&self, span: &Id) {
        self.stack.lock().unwrap().push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.stack.lock().unwrap().pop();
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_execution_and_each_attempt_have_a_span() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let pipeline = Pipeline::builder("users-db")
        .retry(
            RetryPolicy::builder()
                .backoff(
                    Backoff::constant(Duration::from_millis(10))
                        .max_attempts(3)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let ctx = Context::background();
    let calls = AtomicU32::new(0);
    let v = pipeline
        .execute(&ctx, |_| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Err(std::io::Error::other("flaky"))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
    assert_eq!(v, 1);

    let seen = spans.spans.lock().unwrap().clone();
    let executions: Vec<_> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name == "palisade.execute")
        .collect();
    assert_eq!(executions.len(), 1, "{seen:#?}");
    let (index, execution) = executions[0];
    let execution_id = index as u64 + 1;
    assert_eq!(execution.field("dependency"), Some("users-db"));
    assert_eq!(execution.field("outcome"), Some("success"));
    assert_eq!(execution.field("attempts"), Some("2"));

    let attempts: Vec<_> = seen
        .iter()
        .filter(|s| s.name == "palisade.attempt")
        .collect();
    assert_eq!(attempts.len(), 2, "{seen:#?}");
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.parent, Some(execution_id), "{seen:#?}");
        assert_eq!(attempt.field("attempt"), Some((n + 1).to_string().as_str()));
    }
    assert_eq!(attempts[0].field("outcome"), Some("transient failure"));
    assert_eq!(attempts[1].field("outcome"), Some("success"));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_execution_names_each_attempts_error_and_ends_with_an_event_of_the_same_fields() {
    let spans = Spans::default();
    let _default = tracing::subscriber::set_default(spans.clone());
    let pipeline = Pipeline::builder("users-db")
        .retry(
            RetryPolicy::builder()
                .backoff(
                    Backoff::constant(Duration::from_millis(10))
                        .max_attempts(2)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .attempt_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let ctx = Context::background();
    let calls = AtomicU32::new(0);
    let e = pipeline
        .execute(&ctx, |_| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    return Err(std::io::Error::other("flaky"));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(n)
            }
        })
        .await
        .unwrap_err();
    assert!(e.is_retries_exhausted());
    let seen = spans.spans.lock().unwrap().clone();
    let kinds: Vec<_> = seen
        .iter()
        .filter(|s| s.name == "palisade.attempt")
        .map(|s| s.field("error.kind").map(str::to_owned))
        .collect();
    assert_eq!(
        kinds,
        [Some("error".to_owned()), Some("timeout".to_owned())]
    );
    let events = spans.events.lock().unwrap().clone();
    let end = events
        .iter()
        .find(|e| e.field("message") == Some("execution failed"))
        .unwrap_or_else(|| panic!("no final event in {events:#?}"));
    assert_eq!(end.field("dependency"), Some("users-db"));
    assert_eq!(end.field("attempts"), Some("2"));
    assert_eq!(end.field("error.kind"), Some("retries_exhausted"));
}
