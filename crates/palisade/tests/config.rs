//! Named pipelines from configuration, and hot reload.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(feature = "config")]

use std::sync::Arc;
use std::time::Duration;

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

const TWO: &str = r#"
[pipelines.db]
attempt_timeout = "100ms"
[pipelines.db.breaker]
failure_rate_threshold = 50.0
consecutive_failures = 2
[pipelines.cache]
attempt_timeout = "10ms"
"#;

#[tokio::test(start_paused = true)]
async fn a_handle_follows_its_name_through_a_removal_and_a_re_add() {
    let registry = Registry::from_toml(TWO).unwrap();
    let db = registry.pipeline("db").unwrap();
    assert!(db.is_configured());

    let report = registry.reload_toml("[pipelines.cache]").unwrap();
    assert_eq!(report.removed, ["db"]);
    assert!(registry.pipeline("db").is_none());
    assert!(!db.is_configured());
    assert_eq!(registry.names(), ["cache"]);
    // The removed name is not in the health view...
    let names: Vec<_> = registry.snapshots().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["cache"]);
    // ... and its handle keeps serving with its last pipeline.
    fail(&db).await;
    fail(&db).await;
    assert_eq!(db.snapshot().breaker.unwrap().state, State::Open);

    // Configured again: the old handle follows the name, and the pipeline
    // resumes from the last one (its breaker, still open).
    let report = registry
        .reload_toml(&TWO.replace("\"100ms\"", "\"200ms\""))
        .unwrap();
    assert_eq!(report.added, ["db"]);
    assert!(db.is_configured());
    let again = registry.pipeline("db").unwrap();
    assert!(Arc::ptr_eq(&db.current(), &again.current()));
    assert_eq!(
        db.current().attempt_timeout(),
        Some(Duration::from_millis(200))
    );
    assert_eq!(
        fail(&db).await.rejected_by(),
        Some(Strategy::CircuitBreaker)
    );
    // The health view reports the breaker that serves the traffic.
    let snapshot = registry
        .snapshots()
        .into_iter()
        .find(|s| s.name == "db")
        .unwrap();
    let serving = db.snapshot().breaker.unwrap();
    let reported = snapshot.breaker.unwrap();
    assert_eq!(reported.state, State::Open);
    assert_eq!(reported.calls, serving.calls);
    assert_eq!(reported.generation, serving.generation);
}

#[tokio::test(start_paused = true)]
async fn a_re_added_name_without_handles_left_starts_afresh() {
    let registry = Registry::from_toml(TWO).unwrap();
    let db = registry.pipeline("db").unwrap();
    fail(&db).await;
    fail(&db).await;
    registry.reload_toml("[pipelines.cache]").unwrap();
    drop(db);
    let report = registry.reload_toml(TWO).unwrap();
    assert_eq!(report.added, ["db"]);
    let db = registry.pipeline("db").unwrap();
    assert_eq!(db.snapshot().breaker.unwrap().state, State::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_empty_reload_is_refused_unless_allowed() {
    let registry = Registry::from_toml(TWO).unwrap();
    let db = registry.pipeline("db").unwrap();
    for empty in ["", "   \n", "# truncated\n"] {
        let e = registry.reload_toml(empty).unwrap_err();
        assert_eq!(e.field(), "pipelines");
        assert!(e.allowed().contains("allow_empty_reload"), "{e}");
    }
    let e = registry.reload_json("{}").unwrap_err();
    assert_eq!(e.field(), "pipelines");
    // Nothing changed.
    assert_eq!(registry.names(), ["cache", "db"]);
    assert!(db.is_configured());

    let registry = registry.allow_empty_reload(true);
    let report = registry.reload_toml("").unwrap();
    assert_eq!(report.removed, ["cache", "db"]);
    assert!(registry.names().is_empty() && registry.snapshots().is_empty());
    assert!(!db.is_configured());
    // An empty registry may reload empty again: nothing is removed.
    let registry = registry.allow_empty_reload(false);
    assert_eq!(
        registry.reload_toml("").unwrap(),
        palisade::config::ReloadReport::default()
    );
}

#[test]
fn an_empty_registry_may_start_empty_and_grow() {
    let registry = Registry::from_toml("").unwrap();
    assert!(registry.names().is_empty());
    let report = registry.reload_toml(TWO).unwrap();
    assert_eq!(report.added, ["cache", "db"]);
}

mod model {
    //! Reloads, handles taken and dropped, against a model of which names are
    //! configured and what each handle must run through.
    use super::{Arc, Duration, Registry};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    #[derive(Clone, Debug)]
    enum Op {
        /// Reload with the names of the mask, each with this attempt timeout.
        Reload(u8, u64),
        Take(usize),
        Drop(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 1u64..100).prop_map(|(m, t)| Op::Reload(m, t)),
            (0usize..3).prop_map(Op::Take),
            (0usize..8).prop_map(Op::Drop),
        ]
    }

    fn text(mask: u8, ms: u64) -> String {
        NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, n)| format!("[pipelines.{n}]\nattempt_timeout = \"{ms}ms\"\n"))
            .collect()
    }

    proptest! {
        #[test]
        fn handles_follow_their_names_through_any_reloads(
            allow_empty in any::<bool>(),
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let registry = Registry::from_toml(&text(0b011, 1))
                .unwrap()
                .allow_empty_reload(allow_empty);
            // Configured names, with the attempt timeout they have now.
            let mut configured: BTreeMap<&str, u64> = [("a", 1), ("b", 1)].into();
            // The handles, with the attempt timeout of their name's last pipeline.
            let mut last: BTreeMap<&str, u64> = configured.clone();
            let mut handles: Vec<palisade::config::NamedPipeline> = Vec::new();
            for op in ops {
                match op {
                    Op::Reload(mask, ms) => {
                        let next: BTreeMap<&str, u64> = NAMES
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, n)| (*n, ms))
                            .collect();
                        let result = registry.reload_toml(&text(mask, ms));
                        if next.is_empty() && !configured.is_empty() && !allow_empty {
                            let e = result.unwrap_err();
                            prop_assert_eq!(e.field(), "pipelines");
                            continue;
                        }
                        let report = result.unwrap();
                        let added: Vec<_> =
                            next.keys().filter(|n| !configured.contains_key(*n)).collect();
                        let removed: Vec<_> =
                            configured.keys().filter(|n| !next.contains_key(*n)).collect();
                        prop_assert_eq!(report.added.iter().map(String::as_str).collect::<Vec<_>>(), added.into_iter().copied().collect::<Vec<_>>());
                        prop_assert_eq!(report.removed.iter().map(String::as_str).collect::<Vec<_>>(), removed.into_iter().copied().collect::<Vec<_>>());
                        for (n, ms) in &next {
                            last.insert(n, *ms);
                        }
                        configured = next;
                    }
                    Op::Take(i) => {
                        let taken = registry.pipeline(NAMES[i]);
                        prop_assert_eq!(taken.is_some(), configured.contains_key(NAMES[i]));
                        handles.extend(taken);
                    }
                    Op::Drop(i) => {
                        if i < handles.len() {
                            handles.remove(i);
                        }
                    }
                }
                prop_assert_eq!(registry.names(), configured.keys().map(|n| n.to_string()).collect::<Vec<_>>());
                let snapshots: Vec<_> = registry.snapshots().into_iter().map(|s| s.name).collect();
                prop_assert_eq!(snapshots, registry.names());
                for h in &handles {
                    let name = h.name();
                    prop_assert_eq!(h.is_configured(), configured.contains_key(name));
                    prop_assert_eq!(
                        h.current().attempt_timeout(),
                        Some(Duration::from_millis(last[name]))
                    );
                    if let Some(fresh) = registry.pipeline(name) {
                        prop_assert!(Arc::ptr_eq(&h.current(), &fresh.current()));
                    }
                }
            }
        }
    }
}

/// One grammar for every duration of the file: forms that only some sections
/// accepted once (`"1.5s"`, a bare integer of milliseconds, `"2min"`, `"1m30s"`)
/// work in all of them.
#[test]
fn every_section_reads_every_duration_form() {
    use palisade::breaker::{BreakerConfig, OpenDuration, SlowCallConfig};
    for (form, d) in [
        ("\"1.5s\"", Duration::from_millis(1500)),
        ("250", Duration::from_millis(250)),
        ("\"2min\"", Duration::from_secs(120)),
        ("\"1m30s\"", Duration::from_secs(90)),
    ] {
        let text = format!(
            r#"
            [pipelines.api]
            total_timeout = {form}
            attempt_timeout = {form}
            [pipelines.api.retry.backoff]
            kind = "constant"
            initial = {form}
            max_delay = {form}
            [pipelines.api.retry.budget]
            window = {form}
            [pipelines.api.retry.hedging]
            delay = {form}
            [pipelines.api.breaker]
            slow_call = {{ duration = {form}, rate_threshold = 50.0 }}
            open = {{ kind = "fixed", duration = {form} }}
            half_open = {{ max_probe_wait = {form} }}
            [pipelines.api.rate_limiter]
            rate = 10
            period = {form}
            [pipelines.api.bulkhead]
            max_concurrent = 4
            max_queue = 4
            max_wait = {form}
            "#
        );
        let config = RegistryConfig::from_toml(&text).unwrap_or_else(|e| panic!("{form}: {e}"));
        let p = &config.pipelines["api"];
        assert_eq!((p.total_timeout, p.attempt_timeout), (Some(d), Some(d)));
        let retry = p.retry.as_ref().unwrap();
        assert_eq!(retry.backoff.initial, Some(d));
        assert_eq!(retry.backoff.max_delay, Some(d));
        assert_eq!(retry.budget.as_ref().unwrap().window, Some(d));
        assert_eq!(retry.hedging.as_ref().unwrap().delay, Some(d));
        let breaker = BreakerConfig::default()
            .slow_call(Some(SlowCallConfig::new(d, 50.0)))
            .open(OpenDuration::fixed(d))
            .max_probe_wait(d);
        assert_eq!(p.breaker.as_ref(), Some(&breaker));
        assert_eq!(p.rate_limiter.as_ref().unwrap().period, d);
        assert_eq!(p.bulkhead.as_ref().unwrap().max_wait, d);
    }
    let err =
        RegistryConfig::from_toml("[pipelines.api]\nattempt_timeout = \"5 sec\"").unwrap_err();
    assert!(
        err.to_string()
            .contains("invalid duration \"5 sec\": unknown unit \"sec\""),
        "{err}"
    );
}
