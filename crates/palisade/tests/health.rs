//! Health judged from real pipelines: their counts, and readiness over real
//! HTTP against an upstream that is killed and brought back.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "health-http", feature = "breaker", feature = "clock"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration, State};
use palisade::clock::ManualClock;
use palisade::fallback::{Fallback, Trigger};
use palisade::health::{Criticality, Group, Health, Status};
use palisade::{CallCounts, Context, Pipeline};
use tokio::sync::oneshot;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// An upstream on `addr` (any port for port 0) until the sender is used.
async fn upstream(
    addr: SocketAddr,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr, stop, task)
}

async fn get_status(client: &HttpClient, url: &str) -> (u16, String) {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_pipeline_counts_its_attempts_and_executions() {
    let pipeline = Pipeline::builder("counted").build().unwrap();
    let ctx = Context::background();
    for _ in 0..3 {
        pipeline
            .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap();
    }
    let _ = pipeline
        .execute(&ctx, |_| async {
            Err::<(), _>(std::io::Error::other("down"))
        })
        .await;
    let with_fallback =
        pipeline.with_fallback(Fallback::builder().value(Trigger::failures(), ()).build());
    with_fallback
        .execute(&ctx, |_| async {
            Err::<(), _>(std::io::Error::other("down"))
        })
        .await
        .unwrap();
    let calls: CallCounts = pipeline.calls();
    assert_eq!(calls.succeeded, 3);
    assert_eq!(calls.failed, 2);
    assert_eq!(calls.executions_failed, 2);
    assert_eq!(calls.fallback_served, 1);
    assert_eq!(calls.fallback_failed, 0);
    assert_eq!(pipeline.snapshot().calls, calls);
}

#[tokio::test(start_paused = true)]
async fn a_total_timeout_counts_the_attempt_it_gave_up_as_a_failed_timeout() {
    let pipeline = Pipeline::builder("slow")
        .total_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let e = pipeline
        .execute(&Context::background(), |_| {
            std::future::pending::<Result<(), std::io::Error>>()
        })
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    let calls = pipeline.calls();
    assert_eq!(
        (calls.failed, calls.timeouts, calls.executions_failed),
        (1, 1, 1)
    );
    assert_eq!(calls.succeeded, 0);
}

#[tokio::test]
async fn readiness_follows_a_real_upstream_down_and_back_after_the_hysteresis() {
    let clock = ManualClock::new();
    let breaker = Breaker::builder(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(3))
            .open(OpenDuration::fixed(Duration::from_secs(5)))
            .half_open_probes(1),
    )
    .clock(clock.clone())
    .build()
    .unwrap();
    let pipeline = Pipeline::builder_with_clock("upstream", clock.clone())
        .breaker(breaker.clone())
        .build()
        .unwrap();
    // Evaluated by hand below: the background tick is an hour away.
    let health = Health::builder()
        .evaluate_every(Duration::from_secs(3600))
        .dependency("upstream", Criticality::Critical, pipeline.clone())
        .start()
        .unwrap();

    // Health's own endpoints, served by axum.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_addr = listener.local_addr().unwrap();
    let router = health.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let readyz = format!("http://{health_addr}/readyz?verbose");

    let (addr, stop, server) = upstream("127.0.0.1:0".parse().unwrap()).await;
    let http = client();
    let url = format!("http://{addr}/");
    let ctx = Context::background();
    let call = |http: HttpClient, url: String| {
        let pipeline = pipeline.clone();
        let ctx = ctx.clone();
        async move {
            pipeline
                .execute(&ctx, |_| http.get(url.parse().unwrap()))
                .await
                .map(|r| r.status().as_u16())
        }
    };

    for _ in 0..5 {
        assert_eq!(call(http.clone(), url.clone()).await.unwrap(), 200);
    }
    health.evaluate();
    let (code, body) = get_status(&http, &readyz).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "[+]upstream ok\nreadiness check passed\n")
    );

    // The upstream dies: connections are refused, the breaker opens.
    stop.send(()).unwrap();
    server.await.unwrap();
    for _ in 0..5 {
        assert!(call(http.clone(), url.clone()).await.is_err());
    }
    assert_eq!(breaker.state(), State::Open);
    health.evaluate();
    assert_eq!(
        health.status(Group::Readiness),
        Status::Pass,
        "one reading is not an outage"
    );
    health.evaluate();
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    let (code, body) = get_status(&http, &readyz).await;
    assert_eq!(code, 503);
    assert!(
        body.contains("[-]upstream failed: circuit breaker open"),
        "{body}"
    );
    let (code, json) = get_status(&http, &format!("http://{health_addr}/health")).await;
    assert_eq!(code, 503);
    assert!(json.contains(r#""status":"fail""#), "{json}");
    let (code, _) = get_status(&http, &format!("http://{health_addr}/livez")).await;
    assert_eq!(code, 200, "liveness does not follow a dependency");

    // It comes back on the same port; the breaker half-opens and its probe
    // succeeds.
    let (_, _stop_again, _server) = upstream(addr).await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(call(http.clone(), url.clone()).await.unwrap(), 200);
    assert_eq!(breaker.state(), State::Closed);
    for _ in 0..3 {
        assert_eq!(call(http.clone(), url.clone()).await.unwrap(), 200);
    }
    health.evaluate();
    health.evaluate();
    assert_eq!(
        health.status(Group::Readiness),
        Status::Fail,
        "recovery waits for the hysteresis"
    );
    health.evaluate();
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    let (code, _) = get_status(&http, &readyz).await;
    assert_eq!(code, 200);
}

#[cfg(feature = "config")]
#[tokio::test(start_paused = true)]
async fn every_pipeline_of_a_registry_is_a_dependency_and_a_reload_is_followed() {
    use palisade::config::Registry;
    use palisade::health::RegistryHealth;
    const TOML: &str = r#"
[pipelines.db]
[pipelines.db.breaker]
failure_rate_threshold = 50.0
consecutive_failures = 2
[pipelines.cache]
"#;
    let registry = Registry::from_toml(TOML).unwrap();
    let health = Health::builder()
        .registry(&registry, Criticality::Critical)
        .hysteresis(palisade::health::Hysteresis::new(1, 1))
        .start()
        .unwrap();
    let report = health.report();
    let mut ids: Vec<&str> = report.components().iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["cache", "db"]);
    let db = registry.pipeline("db").unwrap();
    for _ in 0..2 {
        let _ = db
            .execute(&Context::background(), |_| async {
                Err::<(), _>(std::io::Error::other("down"))
            })
            .await;
    }
    health.evaluate();
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    // A reload replaces the pipeline (its breaker state is kept) and health
    // reads the new one: its counts start again, which is no negative delta.
    use palisade::health::Observe;
    assert_eq!(db.observe().failed, 2);
    registry.reload_toml(TOML).unwrap();
    // The handle health holds reads the new pipeline: its counts start again.
    assert_eq!(db.observe().failed, 0);
    health.evaluate();
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    db.current().breaker().unwrap().reset();
    health.evaluate();
    assert_eq!(health.status(Group::Readiness), Status::Pass);
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn each_group_and_component_has_a_gauge() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let pipeline = Pipeline::builder("users-api").build().unwrap();
    let health = Health::builder()
        .dependency("users-api", Criticality::Critical, pipeline)
        .start()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        health.begin_shutdown();
    });
    let text = handle.render();
    assert!(
        text.contains(r#"palisade_health_status{group="readiness"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"palisade_health_status{group="liveness"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"palisade_health_component_status{component="users-api"} 0"#),
        "{text}"
    );
}
