//! Each attempt runs in a `retry.attempt` span that records its outcome; budget
//! rejections are events.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_backoff::{Backoff, Jitter};
use palisade_context::Context;
use palisade_retry::{RetryBudget, RetryPolicy};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_are_spans_and_rejections_are_events() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .without_time()
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let budget = RetryBudget::builder()
        .retry_ratio(0.0)
        .min_retries_per_sec(0)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .backoff(
            Backoff::constant(Duration::from_millis(20))
                .jitter(Jitter::None)
                .max_attempts(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let _ = policy
        .retry(&Context::background(), |_| async { Err::<(), _>("down") })
        .await;
    let with_budget = RetryPolicy::builder().budget(budget).build().unwrap();
    let _ = with_budget
        .retry(&Context::background(), |_| async { Err::<(), _>("down") })
        .await;

    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("retry.attempt{attempt=1 hedge=false delay_ms=0 outcome=\"transient\"}"),
        "{out}"
    );
    assert!(
        out.contains("retry.attempt{attempt=2 hedge=false delay_ms=20 outcome=\"transient\"}"),
        "{out}"
    );
    assert!(out.contains("rejected by the retry budget"), "{out}");
}

#[test]
fn zero_delays_accepted_by_the_builders_are_warned_of() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .without_time()
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let text = || String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();

    palisade_retry::Hedging::fixed(Duration::from_millis(5))
        .build()
        .unwrap();
    RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_millis(5)).build().unwrap())
        .build()
        .unwrap();
    assert_eq!(text(), "", "non-zero delays are not warned of");

    palisade_retry::Hedging::fixed(Duration::ZERO)
        .build()
        .unwrap();
    assert!(text().contains("WARN"), "{}", text());
    assert!(text().contains("parallel mode"), "{}", text());
    RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::ZERO).build().unwrap())
        .build()
        .unwrap();
    assert!(text().contains("retried at once"), "{}", text());
}
