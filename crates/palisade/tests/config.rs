//! Named pipelines from configuration, and hot reload.
#![cfg(feature = "config")]

use palisade::Context;
use palisade::breaker::State;
use palisade::classify::Strategy;
use palisade::config::{Registry, RegistryConfig};

const TOML: &str = include_str!("../examples/config/pipelines.toml");
const JSON: &str = include_str!("../examples/config/pipelines.json");

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

#[test]
fn the_example_files_load_and_agree() {
    let toml = RegistryConfig::from_toml(TOML).unwrap();
    let json = RegistryConfig::from_json(JSON).unwrap();
    assert_eq!(toml, json);
    let registry = Registry::new(toml).unwrap();
    assert_eq!(registry.names(), ["payments", "users-api"]);
    let users = registry.pipeline("users-api").unwrap().current();
    assert!(users.breaker().is_some() && users.bulkhead().is_some());
    assert!(users.retry_policy().is_some() && users.rate_limiter().is_none());
    assert!(registry.pipeline("nobody").is_none());
}

const BREAKER: &str = r#"
[pipelines.db]
attempt_timeout = "100ms"
[pipelines.db.breaker]
failure_rate_threshold = 50.0
consecutive_failures = 2
"#;

async fn fail(p: &palisade::config::NamedPipeline) -> palisade::Error<Boom> {
    p.execute(&Context::background(), |_| async { Err::<(), _>(Boom) })
        .await
        .unwrap_err()
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_an_open_breaker_open() {
    let registry = Registry::from_toml(BREAKER).unwrap();
    let db = registry.pipeline("db").unwrap();
    fail(&db).await;
    fail(&db).await;
    assert_eq!(db.snapshot().breaker.unwrap().state, State::Open);
    let before = db.snapshot().breaker.unwrap();

    // A changed threshold: the breaker is reconfigured in place, still open, with
    // its counters.
    let report = registry
        .reload_toml(&BREAKER.replace("consecutive_failures = 2", "consecutive_failures = 10"))
        .unwrap();
    assert_eq!(report.updated, ["db"]);
    assert!(report.breaker_rebuilt.is_empty());
    let after = db.snapshot().breaker.unwrap();
    assert_eq!(after.state, State::Open);
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.calls, before.calls);
    assert_eq!(
        fail(&db).await.rejected_by(),
        Some(Strategy::CircuitBreaker)
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_configuration_is_refused_and_the_old_one_serves() {
    let registry = Registry::from_toml(BREAKER).unwrap();
    let db = registry.pipeline("db").unwrap();
    fail(&db).await;

    let bad = BREAKER.replace(
        "failure_rate_threshold = 50.0",
        "failure_rate_threshold = 150.0",
    );
    let e = registry.reload_toml(&bad).unwrap_err();
    assert_eq!(e.field(), "pipelines.db.breaker.failure_rate_threshold");
    assert!(e.to_string().contains("failure_rate_threshold"), "{e}");

    let e = registry
        .reload_toml("[pipelines.db]\nattempt_timeout = \"0s\"")
        .unwrap_err();
    assert_eq!(e.field(), "pipelines.db.attempt_timeout");

    let e = registry
        .reload_toml("[pipelines.db]\nattempt_timeot = \"1s\"")
        .unwrap_err();
    assert!(e.to_string().contains("attempt_timeot"), "{e}");

    // Nothing changed: the same breaker, counting on; the second failure opens it.
    assert_eq!(
        registry.config(),
        RegistryConfig::from_toml(BREAKER).unwrap()
    );
    fail(&db).await;
    assert_eq!(db.snapshot().breaker.unwrap().state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn reload_adds_removes_and_rebuilds_a_reshaped_breaker() {
    let registry = Registry::from_toml(BREAKER).unwrap();
    let db = registry.pipeline("db").unwrap();
    fail(&db).await;
    fail(&db).await;
    let reshaped = format!(
        "{BREAKER}minimum_calls = 5\nwindow = {{ kind = \"count\", size = 10 }}\n[pipelines.cache]\nattempt_timeout = \"10ms\"\n"
    );
    let report = registry.reload_toml(&reshaped).unwrap();
    assert_eq!(report.added, ["cache"]);
    assert_eq!(report.breaker_rebuilt, ["db"]);
    // A new window shape is a new breaker: closed, empty.
    assert_eq!(db.snapshot().breaker.unwrap().state, State::Closed);
    assert!(registry.pipeline("cache").is_some());

    let report = registry.reload_toml("[pipelines.cache]").unwrap();
    assert_eq!(report.removed, ["db"]);
    assert!(registry.pipeline("db").is_none());
    // A handle given out earlier keeps its last pipeline.
    assert_eq!(db.name(), "db");
    assert!(db.current().breaker().is_some());
}
