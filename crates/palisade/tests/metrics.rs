//! The metrics a pipeline reports, read back in the Prometheus text format.
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
