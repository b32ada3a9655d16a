//! Every rule of palisade-health, in virtual time.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use palisade_health::{
    Availability, Change, Criticality, DependencyRules, Group, Groups, Health, Hysteresis,
    Observation, ProbeConfig, Status, Verdict,
};
use palisade_test::TaskBaseline;
use parking_lot::Mutex;

/// A dependency whose counters the test moves.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Observation>>);

impl Fake {
    fn with_fallback() -> Fake {
        let fake = Fake::default();
        fake.0.lock().has_fallback = true;
        fake
    }
    fn source(&self) -> impl Fn() -> Observation + Send + Sync + 'static {
        let inner = self.0.clone();
        move || *inner.lock()
    }
    fn update(&self, f: impl FnOnce(&mut Observation)) {
        f(&mut self.0.lock());
    }
}

/// Lets the evaluation task (every second by default) run `n` times.
async fn evaluations(n: u32) {
    for _ in 0..n {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The tick at the end of the last second runs before we read.
    tokio::task::yield_now().await;
}

fn one_dependency(fake: &Fake, criticality: Criticality) -> Health {
    Health::builder()
        .dependency("upstream", criticality, fake.source())
        .start()
        .unwrap()
}

fn component_status(health: &Health, id: &str) -> Status {
    health
        .report()
        .component(id)
        .unwrap_or_else(|| panic!("no component {id}"))
        .verdict
        .status()
}

#[tokio::test(start_paused = true)]
async fn a_health_with_no_component_is_a_configuration_error() {
    let err = Health::builder().start().unwrap_err();
    assert_eq!(err.field(), "components");
    assert!(err.to_string().contains("at least one"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_dependency_in_liveness_is_a_configuration_error() {
    let fake = Fake::default();
    let err = Health::builder()
        .dependency_in(
            "db",
            Criticality::Critical,
            Groups::LIVENESS.and(Group::Readiness),
            fake.source(),
        )
        .start()
        .unwrap_err();
    assert!(err.field().contains("db"), "{err}");
    assert!(err.allowed().contains("must not restart"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn bad_rules_name_the_field_and_the_range() {
    let mut rules = DependencyRules::default();
    rules.fallback_warn = 1.5;
    let err = Health::builder()
        .rules(rules)
        .dependency("x", Criticality::Critical, Fake::default().source())
        .start()
        .unwrap_err();
    assert_eq!(err.field(), "rules.fallback_warn");
    assert_eq!(err.value(), Some("1.5"));
    let err = Health::builder()
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap_err();
    assert_eq!(err.field(), "component id");
    let err = Health::builder()
        .probe(
            "p",
            Criticality::Critical,
            Groups::READINESS,
            ProbeConfig::every(Duration::ZERO),
            |_| async { true },
        )
        .start()
        .unwrap_err();
    assert!(err.field().contains("interval"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn liveness_never_follows_a_dependency() {
    let fake = Fake::default();
    let health = Health::builder()
        .dependency("db", Criticality::Critical, fake.source())
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap();
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(3).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert_eq!(health.status(Group::Liveness), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_without_fallback_fails_readiness_after_the_hysteresis() {
    let fake = Fake::default();
    let health = one_dependency(&fake, Criticality::Critical);
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(1).await;
    // One bad reading is not an outage.
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    assert_eq!(
        health.report().component("upstream").unwrap().pending,
        Some(Status::Fail)
    );
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert!(
        health
            .report()
            .reason(Group::Readiness)
            .contains("circuit breaker open"),
        "{}",
        health.report().reason(Group::Readiness)
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_whose_fallback_answers_only_warns() {
    let fake = Fake::with_fallback();
    let health = one_dependency(&fake, Criticality::Critical);
    fake.update(|o| {
        o.availability = Availability::Unavailable;
        o.fallback_served = 50;
        o.executions_failed = 50;
    });
    evaluations(3).await;
    assert_eq!(health.status(Group::Readiness), Status::Warn);
    assert!(Status::Warn.is_up());
    let output = health.report().reason(Group::Readiness);
    assert!(output.contains("answered by the fallback"), "{output}");
}

#[tokio::test(start_paused = true)]
async fn an_optional_dependency_that_fails_only_warns() {
    let fake = Fake::default();
    let health = one_dependency(&fake, Criticality::Optional);
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(3).await;
    assert_eq!(component_status(&health, "upstream"), Status::Fail);
    assert_eq!(health.status(Group::Readiness), Status::Warn);
}

#[tokio::test(start_paused = true)]
async fn recovery_waits_for_the_better_hysteresis() {
    let fake = Fake::default();
    let health = Health::builder()
        .hysteresis(Hysteresis::new(1, 3))
        .dependency("upstream", Criticality::Critical, fake.source())
        .start()
        .unwrap();
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    fake.update(|o| o.availability = Availability::Available);
    evaluations(2).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_dependency_does_not_flap_health() {
    let fake = Fake::default();
    let changes = Arc::new(AtomicU32::new(0));
    let seen = changes.clone();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .on_change(move |_| {
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .start()
        .unwrap();
    for i in 0..20 {
        fake.update(|o| {
            o.availability = if i % 2 == 0 {
                Availability::Unavailable
            } else {
                Availability::Available
            }
        });
        evaluations(1).await;
        assert_eq!(
            health.status(Group::Readiness),
            Status::Pass,
            "evaluation {i}"
        );
    }
    assert_eq!(changes.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_status_alternating_between_fail_and_warn_still_leaves_pass() {
    // A breaker cycling open (fail) and half-open (warn) at each evaluation.
    let fake = Fake::default();
    let health = one_dependency(&fake, Criticality::Critical);
    for i in 0..2 {
        fake.update(|o| {
            o.availability = if i % 2 == 0 {
                Availability::Unavailable
            } else {
                Availability::Probing
            };
        });
        evaluations(1).await;
    }
    assert_eq!(health.status(Group::Readiness), Status::Warn);
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_panics_does_not_stop_the_evaluation() {
    let fake = Fake::default();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .hysteresis(Hysteresis::new(1, 1))
        .on_change(|_| panic!("hook exploded"))
        .start()
        .unwrap();
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    fake.update(|o| o.availability = Availability::Available);
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn shares_are_judged_when_evaluations_are_further_apart_than_the_window() {
    let fake = Fake::default();
    let mut rules = DependencyRules::default();
    rules.window = Duration::from_secs(5);
    let health = Health::builder()
        .rules(rules)
        .evaluate_every(Duration::from_secs(10))
        .hysteresis(Hysteresis::new(1, 1))
        .dependency("upstream", Criticality::Critical, fake.source())
        .start()
        .unwrap();
    fake.update(|o| {
        o.succeeded += 10;
        o.failed += 10;
        o.timeouts += 10;
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
}

#[tokio::test(start_paused = true)]
async fn idle_time_before_the_first_failure_is_no_failing_time() {
    let fake = Fake::default();
    let mut rules = DependencyRules::default();
    rules.no_success_for = Duration::from_secs(10);
    let health = Health::builder()
        .rules(rules)
        .hysteresis(Hysteresis::new(1, 1))
        .dependency("upstream", Criticality::Critical, fake.source())
        .start()
        .unwrap();
    fake.update(|o| o.succeeded = 1);
    evaluations(60).await;
    fake.update(|o| o.failed += 20);
    evaluations(1).await;
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    for _ in 0..10 {
        fake.update(|o| o.failed += 1);
        evaluations(1).await;
    }
    assert_eq!(health.status(Group::Readiness), Status::Fail);
}

#[tokio::test(start_paused = true)]
async fn calls_answering_but_none_succeeding_fail_within_the_configured_time() {
    // Case (a): every call is made and answered, local checks pass, no breaker
    // opens, and nothing succeeds.
    let fake = Fake::default();
    let mut rules = DependencyRules::default();
    rules.no_success_for = Duration::from_secs(10);
    let health = Health::builder()
        .rules(rules)
        .dependency("upstream", Criticality::Critical, fake.source())
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap();
    let mut left_pass_after = None;
    for second in 1..=20u64 {
        fake.update(|o| o.failed += 5);
        evaluations(1).await;
        if left_pass_after.is_none() && health.status(Group::Readiness) != Status::Pass {
            left_pass_after = Some(second);
        }
    }
    let after = left_pass_after.expect("readiness never left pass");
    // 10 s of no success, then the hysteresis of 2 evaluations.
    assert!((10..=12).contains(&after), "left pass after {after} s");
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert_eq!(health.status(Group::Liveness), Status::Pass);
    let output = health.report().reason(Group::Readiness);
    assert!(output.contains("none succeeded"), "{output}");
}

#[tokio::test(start_paused = true)]
async fn a_share_of_timeouts_warns_then_fails() {
    let fake = Fake::default();
    let health = one_dependency(&fake, Criticality::Critical);
    // 20 % of attempts time out: warn.
    for _ in 0..3 {
        fake.update(|o| {
            o.succeeded += 8;
            o.failed += 2;
            o.timeouts += 2;
        });
        evaluations(1).await;
    }
    assert_eq!(health.status(Group::Readiness), Status::Warn);
    assert!(
        health
            .report()
            .reason(Group::Readiness)
            .contains("timed out")
    );
    // Then most of them: fail, once the share over the window is above a half.
    for _ in 0..40 {
        fake.update(|o| {
            o.succeeded += 1;
            o.failed += 9;
            o.timeouts += 9;
        });
        evaluations(1).await;
    }
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    let json = health.report().to_json(Some(Group::Readiness));
    assert_eq!(
        json["checks"]["upstream:dependency"][0]["observedUnit"],
        "percent"
    );
}

#[tokio::test(start_paused = true)]
async fn everything_served_by_fallback_warns_with_the_reason_and_stays_ready() {
    // Case (b): every request is served by the fallback; readiness passes (no
    // cascading eviction) but says so.
    let fake = Fake::with_fallback();
    let health = one_dependency(&fake, Criticality::Critical);
    for _ in 0..5 {
        fake.update(|o| {
            o.failed += 10;
            o.executions_failed += 10;
            o.fallback_served += 10;
        });
        evaluations(1).await;
    }
    assert_eq!(health.status(Group::Readiness), Status::Warn);
    assert!(health.status(Group::Readiness).is_up());
    let output = health.report().reason(Group::Readiness);
    assert!(output.contains("fallback"), "{output}");
}

#[tokio::test(start_paused = true)]
async fn p99_latency_near_the_deadline_warns() {
    let fake = Fake::default();
    fake.update(|o| o.deadline = Some(Duration::from_millis(500)));
    let health = one_dependency(&fake, Criticality::Critical);
    fake.update(|o| o.latency_p99 = Some(Duration::from_millis(450)));
    evaluations(3).await;
    assert_eq!(health.status(Group::Readiness), Status::Warn);
    assert!(health.report().reason(Group::Readiness).contains("p99"));
}

#[tokio::test(start_paused = true)]
async fn a_pipeline_replaced_by_a_reload_is_a_new_start_not_a_negative_count() {
    let fake = Fake::default();
    let health = one_dependency(&fake, Criticality::Critical);
    fake.update(|o| o.succeeded = 1000);
    // Evaluated here, not by the background task: a subtraction that overflowed
    // would panic this test instead of ending that task quietly.
    health.evaluate();
    fake.update(|o| {
        o.succeeded = 3;
        o.failed = 0;
    });
    let report = health.evaluate();
    assert_eq!(report.status(Group::Readiness), Status::Pass);
    // The new start's 3 successes are the window's whole count: 100 %.
    let observed = report
        .component("upstream")
        .unwrap()
        .verdict
        .observed_value();
    assert_eq!(observed.map(|o| o.value), Some(100.0));
}

#[tokio::test(start_paused = true)]
async fn shutdown_fails_readiness_at_once_and_leaves_liveness() {
    let fake = Fake::default();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap();
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    health.begin_shutdown();
    assert!(health.is_shutting_down());
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert_eq!(health.status(Group::Liveness), Status::Pass);
    assert_eq!(health.report().reason(Group::Readiness), "shutting down");
    evaluations(5).await;
    assert_eq!(health.status(Group::Readiness), Status::Fail);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_fails_at_its_timeout_and_its_context_is_cancelled() {
    let cancelled = Arc::new(AtomicBool::new(false));
    let seen = cancelled.clone();
    let health = Health::builder()
        .probe(
            "hangs",
            Criticality::Critical,
            Groups::READINESS,
            ProbeConfig::every(Duration::from_secs(5))
                .timeout(Duration::from_millis(300))
                .jitter(0.0),
            move |ctx| {
                let seen = seen.clone();
                async move {
                    struct OnDrop(Arc<AtomicBool>, palisade_context::Context);
                    impl Drop for OnDrop {
                        fn drop(&mut self) {
                            // Dropped at the timeout: its context has ended by then.
                            self.0.store(self.1.is_cancelled(), Ordering::SeqCst);
                        }
                    }
                    let _guard = OnDrop(seen, ctx);
                    std::future::pending::<Verdict>().await
                }
            },
        )
        .start()
        .unwrap();
    // Not run yet: not started, not ready.
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert_eq!(
        health.report().component("hangs").unwrap().verdict.output(),
        Some("not run yet")
    );
    evaluations(4).await;
    let report = health.report();
    let output = report.component("hangs").unwrap().verdict.output().unwrap();
    assert!(output.contains("timed out after 300 ms"), "{output}");
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the probe's context was not cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_and_a_panicking_check_fail_with_the_message() {
    let health = Health::builder()
        .probe(
            "boom",
            Criticality::Optional,
            Groups::READINESS,
            ProbeConfig::every(Duration::from_secs(1)),
            |_| async {
                if true {
                    panic!("probe exploded");
                }
                Verdict::pass()
            },
        )
        .check(
            "bang",
            Criticality::Optional,
            Groups::LIVENESS,
            || -> bool { panic!("check exploded") },
        )
        .start()
        .unwrap();
    evaluations(3).await;
    let report = health.report();
    let probe = report.component("boom").unwrap().verdict.output().unwrap();
    assert!(probe.contains("probe panicked: probe exploded"), "{probe}");
    let check = report.component("bang").unwrap().verdict.output().unwrap();
    assert!(check.contains("check panicked: check exploded"), "{check}");
    // The endpoint still answers.
    assert_eq!(health.status(Group::Liveness), Status::Warn);
}

#[tokio::test(start_paused = true)]
async fn a_probe_runs_on_its_schedule_and_passes_once_it_answers() {
    let runs = Arc::new(AtomicU32::new(0));
    let counted = runs.clone();
    let health = Health::builder()
        .probe(
            "db",
            Criticality::Critical,
            Groups::READINESS.and(Group::Startup),
            ProbeConfig::every(Duration::from_secs(10)).jitter(0.1),
            move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), String>(()) }
            },
        )
        .start()
        .unwrap();
    evaluations(1).await;
    assert_eq!(runs.load(Ordering::Relaxed), 1);
    assert_eq!(health.status(Group::Startup), Status::Pass);
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Every 9 to 11 s: 6 or 7 runs in the minute, the first included.
    let n = runs.load(Ordering::Relaxed);
    assert!((6..=7).contains(&n), "{n} runs");
}

#[tokio::test(start_paused = true)]
async fn startup_latches_once_passed() {
    let ok = Arc::new(AtomicBool::new(false));
    let flag = ok.clone();
    let health = Health::builder()
        .check(
            "warm-cache",
            Criticality::Critical,
            Groups::STARTUP,
            move || flag.load(Ordering::Relaxed),
        )
        .check("disk", Criticality::Critical, Groups::READINESS, || true)
        .hysteresis(Hysteresis::new(1, 1))
        .start()
        .unwrap();
    assert_eq!(health.status(Group::Startup), Status::Fail);
    assert_eq!(health.status(Group::Readiness), Status::Fail);
    assert_eq!(health.report().reason(Group::Readiness), "not started yet");
    ok.store(true, Ordering::Relaxed);
    evaluations(1).await;
    assert_eq!(health.status(Group::Startup), Status::Pass);
    assert_eq!(health.status(Group::Readiness), Status::Pass);
    ok.store(false, Ordering::Relaxed);
    evaluations(3).await;
    assert_eq!(health.status(Group::Startup), Status::Pass);
}

#[tokio::test(start_paused = true)]
async fn the_runtime_lag_probe_sees_a_late_wake_up() {
    let health = Health::builder()
        .runtime_lag(
            Duration::from_millis(100),
            Duration::from_millis(50),
            Duration::from_millis(500),
        )
        .hysteresis(Hysteresis::new(1, 1))
        .start()
        .unwrap();
    evaluations(2).await;
    assert_eq!(component_status(&health, "tokio-runtime"), Status::Pass);
    // Time jumps past the lag task's wake-up: it wakes 900 ms late, as after
    // a blocked worker.
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(1000)).await;
    tokio::task::yield_now().await;
    health.evaluate();
    let report = health.report();
    let c = report.component("tokio-runtime").unwrap();
    assert_eq!(c.verdict.status(), Status::Fail, "{:?}", c.verdict);
    assert!(c.verdict.output().unwrap().contains("late"));
}

#[tokio::test(start_paused = true)]
async fn every_change_is_told_once() {
    let fake = Fake::default();
    let changes: Arc<Mutex<Vec<Change>>> = Arc::default();
    let log = changes.clone();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .on_change(move |c| log.lock().push(c.clone()))
        .start()
        .unwrap();
    fake.update(|o| o.availability = Availability::Unavailable);
    evaluations(4).await;
    let seen = changes.lock().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].component.as_deref(), Some("upstream"));
    assert_eq!((seen[0].from, seen[0].to), (Status::Pass, Status::Fail));
    assert_eq!(seen[1].group, Some(Group::Readiness));
    drop(health);
}

#[tokio::test(start_paused = true)]
async fn health_json_has_the_drafts_fields() {
    let fake = Fake::default();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .check("disk", Criticality::Optional, Groups::LIVENESS, || {
            Verdict::warn("disk 91 % full").observed(91.0, "percent")
        })
        .start()
        .unwrap();
    let json = health.report().to_json(None);
    assert_eq!(json["status"], "warn");
    let disk = &json["checks"]["disk:check"][0];
    assert_eq!(disk["componentId"], "disk");
    assert_eq!(disk["componentType"], "check");
    assert_eq!(disk["status"], "warn");
    assert_eq!(disk["observedValue"], 91.0);
    assert_eq!(disk["observedUnit"], "percent");
    assert_eq!(disk["output"], "disk 91 % full");
    assert!(disk["time"].as_str().unwrap().ends_with('Z'));
    let text = health.report().to_text(Group::Liveness);
    assert_eq!(
        text,
        "[~]disk warn: disk 91 % full\nliveness check passed\n"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_or_stopping_ends_every_task() {
    let start = || {
        Health::builder()
            .probe(
                "db",
                Criticality::Critical,
                Groups::READINESS,
                ProbeConfig::default(),
                |_| async { true },
            )
            .runtime_lag(
                Duration::from_millis(100),
                Duration::from_millis(50),
                Duration::from_millis(500),
            )
            .start()
            .unwrap()
    };
    let baseline = TaskBaseline::now();
    let health = start();
    evaluations(2).await;
    // The probe, the lag probe and the evaluation.
    assert_eq!(palisade_test::live_tasks(), baseline.tasks() + 3);
    drop(health);
    baseline.assert_none_left().await;

    let health = start();
    evaluations(2).await;
    assert_eq!(palisade_test::live_tasks(), baseline.tasks() + 3);
    health.stop();
    baseline.assert_none_left().await;
    // The last report stays, and evaluating by hand still works.
    assert_eq!(health.evaluate().status(Group::Liveness), Status::Pass);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn the_http_answers_follow_the_groups() {
    let fake = Fake::default();
    let health = Health::builder()
        .dependency("upstream", Criticality::Critical, fake.source())
        .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
        .start()
        .unwrap();
    let r = health.respond("/readyz", None);
    assert_eq!((r.status().as_u16(), r.body().as_str()), (200, "ok\n"));
    let r = health.respond("/livez", Some("verbose"));
    assert_eq!(r.body(), "[+]disk ok\nliveness check passed\n");
    let r = health.respond("/health", None);
    assert_eq!(r.headers()["content-type"], palisade_health::HEALTH_JSON);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(health.respond("/metrics", None).status().as_u16(), 404);
    health.begin_shutdown();
    let r = health.respond("/readyz", None);
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        r.body().contains("[-]shutdown failed: shutting down"),
        "{}",
        r.body()
    );
    assert_eq!(health.respond("/livez", None).status().as_u16(), 200);
    let r = health.respond("/startupz", None);
    assert_eq!(r.status().as_u16(), 200);
}
