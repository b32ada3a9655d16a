//! The metrics a pipeline reports, read back in the Prometheus text format.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "metrics", feature = "breaker"))]

use metrics_exporter_prometheus::PrometheusBuilder;
use palisade::breaker::{Breaker, BreakerConfig};
use palisade::{Context, Pipeline};

#[tokio::test(start_paused = true)]
async fn calls_attempts_rejections_and_breaker_state_are_reported() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Handles are registered when the pipeline is built, with the recorder of
    // that moment.
    let pipeline = metrics::with_local_recorder(&recorder, || {
        palisade::metrics::describe();
        let config = BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(2));
        Pipeline::builder("users-db")
            .breaker(Breaker::new(config).unwrap())
            .build()
            .unwrap()
    });
    let ctx = Context::background();
    pipeline
        .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = pipeline
            .execute(&ctx, |_| async {
                Err::<(), _>(std::io::Error::other("down"))
            })
            .await;
    }
    let text = handle.render();
    for line in [
        r#"palisade_calls_total{dependency="users-db",outcome="success"} 1"#,
        r#"palisade_calls_total{dependency="users-db",outcome="error"} 2"#,
        r#"palisade_calls_total{dependency="users-db",outcome="rejected"} 1"#,
        r#"palisade_attempts_total{dependency="users-db",outcome="transient"} 2"#,
        r#"palisade_rejections_total{dependency="users-db",strategy="circuit_breaker"} 1"#,
        r#"palisade_breaker_state{dependency="users-db"} 1"#,
        r#"palisade_call_duration_seconds_count{dependency="users-db"} 4"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// An execution given up (its total timeout fired, or its context ended) while its
/// first attempt holds a bulkhead slot frees the slot before the gauge is read.
#[cfg(feature = "limit")]
#[tokio::test(start_paused = true)]
async fn an_abandoned_execution_is_not_counted_in_flight() {
    use palisade::limit::{Bulkhead, BulkheadConfig};
    use std::time::Duration;

    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let pipeline = metrics::with_local_recorder(&recorder, || {
        Pipeline::builder("users-db")
            .bulkhead(Bulkhead::new(BulkheadConfig::new(1)).unwrap())
            .total_timeout(Duration::from_millis(50))
            .build()
            .unwrap()
    });
    let in_flight = r#"palisade_bulkhead_in_flight{dependency="users-db"} 0"#;

    let e = pipeline
        .execute(&Context::background(), |_| {
            std::future::pending::<Result<(), std::io::Error>>()
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout());
    let text = handle.render();
    assert!(text.contains(in_flight), "missing {in_flight:?} in\n{text}");

    let (ctx, guard) = Context::background().with_cancel();
    let run = pipeline.execute(&ctx, |_| {
        std::future::pending::<Result<(), std::io::Error>>()
    });
    let cancel = async {
        tokio::task::yield_now().await;
        guard.cancel();
    };
    let (result, ()) = tokio::join!(run, cancel);
    assert!(result.unwrap_err().is_cancelled());
    let text = handle.render();
    assert!(text.contains(in_flight), "missing {in_flight:?} in\n{text}");
}
