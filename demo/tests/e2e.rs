//! End to end, on real sockets on loopback and in real time, but short: the demo's
//! scenario compressed, the scripted dependency alone, and the health endpoint.
//!
//! Every assertion is a bound with a margin that a busy two-core machine keeps;
//! every loop is bounded; every test ends with no live task and no open connection.
#![allow(clippy::disallowed_methods)] // tests may read the wall clock

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use palisade::health::{Availability, Observation, Status};
use palisade::reqwest::ReqwestClassifier;
use palisade_clock::{Clock, TokioClock};
use palisade_demo::health::{BreakerView, HEALTH_PATH, HealthServer, build};
use palisade_demo::load::http_client;
use palisade_demo::report;
use palisade_demo::scenario::{ScenarioConfig, run_scenario};
use palisade_demo::server::{Dependency, PROBE_PATH};
use palisade_demo::services::WORK_PATH;
use palisade_demo::timeline::{Behaviour, Phase, Timeline};

/// Waits, boundedly, until every task of this runtime has ended: the servers'
/// connections close on real sockets, so this waits up to two seconds on the
/// runtime's clock.
async fn assert_no_live_tasks() {
    if let Err(e) = palisade_test::no_live_tasks(Duration::from_secs(2)).await {
        panic!("{e}");
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dependency_follows_its_script_on_one_port() {
    let timeline = Timeline::new(vec![
        (Phase::Healthy, ms(400)),
        (Phase::UnavailableBursts, ms(600)),
        (Phase::ConnectionResets, ms(400)),
        (Phase::Outage, ms(400)),
        (Phase::Recovery, ms(400)),
    ])
    .unwrap();
    let behaviour = Behaviour {
        burst_percent: 100,
        reset_percent: 100,
        ..Behaviour::default()
    };
    let clock = TokioClock;
    let start = clock.now() + ms(50);
    let dependency = Dependency::start(timeline.clone(), behaviour, start)
        .await
        .unwrap();
    let client = http_client();
    let base = format!("http://{}", dependency.addr());
    let get = async |path: &str| client.get(format!("{base}{path}")).send().await;
    // The middle of each phase, well clear of its edges.
    let at = |phase: usize| start + timeline.start_of(phase) + timeline.phases()[phase].1 / 2;

    clock.sleep_until(at(0)).await;
    let reply = get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(&reply.bytes().await.unwrap()[..], b"ok");

    clock.sleep_until(at(1)).await;
    let reply = get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 503);
    let outcome = ReqwestClassifier::new().classify_response(&reply);
    assert_eq!(outcome.retry_after(), Some(Duration::from_secs(1)));

    clock.sleep_until(at(2)).await;
    let error = get(WORK_PATH).await.unwrap_err();
    assert!(!error.is_connect() && !error.is_builder(), "{error:?}");

    clock.sleep_until(at(3)).await;
    let error = get(WORK_PATH).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    assert_eq!(dependency.phase(), Phase::Outage);

    clock.sleep_until(at(4)).await;
    let reply = get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 200, "back on the same port");
    assert_eq!(get(PROBE_PATH).await.unwrap().status(), 200);

    drop(client);
    let stats = dependency.shutdown().await;
    assert_eq!(stats.open_connections, 0);
    assert_eq!(stats.phase(Phase::Healthy).unwrap().ok, 1);
    assert_eq!(
        stats.phase(Phase::UnavailableBursts).unwrap().unavailable,
        1
    );
    assert_eq!(stats.phase(Phase::ConnectionResets).unwrap().reset, 1);
    assert_eq!(stats.phase(Phase::Outage).unwrap().received, 0);
    assert_eq!(stats.phase(Phase::Recovery).unwrap().ok, 1);
    assert_eq!(stats.probes, 1);
    assert_no_live_tasks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_warns_while_the_fallback_answers_and_fails_when_nothing_does() {
    let timeline = Timeline::new(vec![
        (Phase::Healthy, ms(1500)),
        (Phase::Outage, ms(1000)),
        (Phase::Recovery, ms(500)),
    ])
    .unwrap();
    let clock = TokioClock;
    let start = clock.now();
    let dependency = Dependency::start(timeline.clone(), Behaviour::default(), start)
        .await
        .unwrap();
    // The pipeline's side, set by hand: whether its breaker is open and
    // whether a fallback answers.
    let open = Arc::new(AtomicU8::new(0));
    let source = {
        let open = open.clone();
        move || {
            let mut o = Observation::default();
            match open.load(Relaxed) {
                0 => {}
                1 => {
                    o.availability = Availability::Unavailable;
                    o.has_fallback = true;
                }
                _ => o.availability = Availability::Unavailable,
            }
            o
        }
    };
    let health = build(source, dependency.addr(), ms(300), ms(50)).unwrap();
    let server = HealthServer::start(health.clone()).await.unwrap();
    let client = http_client();
    let url = format!("http://{}{HEALTH_PATH}", server.addr());
    let get = async |client: &reqwest::Client| {
        let reply = client.get(&url).send().await.unwrap();
        let status = reply.status().as_u16();
        let json: serde_json::Value =
            serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
        (status, json)
    };
    // Past the hysteresis (3 evaluations to get better, 2 to get worse).
    let settle = || clock.sleep(ms(400));

    settle().await;
    let (status, json) = get(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("pass")),
        "{json}"
    );
    assert_eq!(json["checks"]["dependency:dependency"][0]["status"], "pass");
    assert_eq!(
        json["checks"]["dependency-probe:probe"][0]["status"],
        "pass"
    );

    // An open breaker whose fallback answers: warn, still in the load balancer.
    open.store(1, Relaxed);
    settle().await;
    let (status, json) = get(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("warn")),
        "{json}"
    );

    // Nothing answers for it: fail.
    open.store(2, Relaxed);
    settle().await;
    let (status, json) = get(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (503, Some("fail")),
        "{json}"
    );

    // The dependency goes down, the pipeline recovers: the failed probe alone
    // only warns.
    open.store(0, Relaxed);
    clock.sleep_until(start + ms(2000)).await;
    let (status, json) = get(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("warn")),
        "{json}"
    );
    assert_eq!(
        json["checks"]["dependency-probe:probe"][0]["status"],
        "fail"
    );

    clock.sleep_until(start + ms(2900)).await;
    let (_, json) = get(&client).await;
    assert_eq!(json["status"], "pass", "{json}");

    drop(client);
    server.shutdown().await;
    health.stop();
    let stats = dependency.shutdown().await;
    assert_eq!(stats.open_connections, 0);
    assert_no_live_tasks().await;
}

/// The demo's scenario at 0.4 times its length (13 seconds), both runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defence_holds_where_the_unprotected_service_does_not() {
    let config = ScenarioConfig::compressed(0.4).unwrap();
    let result = run_scenario(&config, |_| {}).await.unwrap();
    let table = report::table(&result.reports);
    let [unprotected, protected] = &result.reports[..] else {
        panic!("two runs expected:\n{table}");
    };
    let p = &config.protection;
    let requests = config.load().requests();
    let (outage_start, outage_end) = config.timeline.span_of(Phase::Outage).unwrap();
    let outage = outage_end - outage_start;

    // Both runs saw the same load and the same script.
    assert_eq!(unprotected.requests, requests, "{table}");
    assert_eq!(protected.requests, requests, "{table}");
    let offered_in_outage = outage.as_secs_f64() * f64::from(config.rate);
    assert!(
        unprotected.attempts_during_outage as f64 >= 0.9 * offered_in_outage,
        "the unprotected service keeps calling the dead dependency:\n{table}"
    );

    // During the outage, once the breaker has opened, the dependency sees no more
    // than the half-open probes: a round of probes per open period, plus one.
    let bucket = protected.bucket;
    let first = outage_start.as_nanos().div_ceil(bucket.as_nanos()) as usize;
    let end = (outage_end.as_nanos() / bucket.as_nanos()) as usize;
    let opened = (first..end)
        .find(|&i| protected.buckets[i].breaker == Some(BreakerView::Open))
        .unwrap_or_else(|| panic!("the breaker never opened during the outage:\n{table}"));
    assert!(
        bucket * (opened - first) as u32 <= outage / 2,
        "the breaker opened late:\n{table}"
    );
    let after_open: u64 = protected.buckets[opened + 1..end]
        .iter()
        .map(|b| b.attempts)
        .sum();
    let rounds = (outage.as_secs_f64() / p.open_duration.as_secs_f64()).ceil() as u64 + 1;
    let probe_bound = rounds * u64::from(p.half_open_probes);
    assert!(
        after_open <= probe_bound,
        "{after_open} calls reached the dependency after the breaker opened; probes allow {probe_bound}:\n{table}"
    );
    assert!(
        protected.attempts_during_outage * 2 < unprotected.attempts_during_outage,
        "{table}"
    );

    // Retries stay within the budget: over any window, a share of the first
    // attempts plus a floor per second. A span of the run then holds at most its
    // requests plus the budget of the span and one window more (the window reaches
    // back before the span), and two retries for the window sliding in buckets.
    let window = p.retry_budget_window.as_secs_f64();
    let per_sec = f64::from(p.retry_budget_percent) / 100.0 * f64::from(config.rate)
        + f64::from(p.retry_budget_min_per_sec);
    let within_budget =
        |requests: f64, span: Duration| requests + per_sec * (span.as_secs_f64() + window) + 2.0;
    let total = config.timeline.total();
    assert!(
        protected.attempts as f64 <= within_budget(requests as f64, total),
        "amplification {:.3} over the budget:\n{table}",
        protected.amplification()
    );
    for (i, &(phase, length)) in config.timeline.phases().iter().enumerate() {
        let offered = length.as_secs_f64() * f64::from(config.rate);
        let sent = protected.attempts_per_phase[i] as f64;
        assert!(
            sent <= within_budget(offered, length),
            "{sent} calls during {phase} for {offered} requests: over the budget\n{table}"
        );
    }
    let spikes = config
        .timeline
        .phases()
        .iter()
        .position(|p| p.0 == Phase::LatencySpikes)
        .unwrap();
    assert!(
        protected.attempts_per_phase[spikes] > unprotected.attempts_per_phase[spikes],
        "no retry during the latency spikes:\n{table}"
    );

    // No request outlives its deadline by more than a small margin.
    let margin = Duration::from_millis(100);
    assert!(
        protected.max_over_deadline <= margin,
        "a request outlived its deadline by {:?}:\n{table}",
        protected.max_over_deadline
    );
    assert!(protected.max <= config.deadline + margin, "{table}");
    // Attempt timeouts cut the latency spikes the unprotected service waits out.
    assert!(unprotected.p99 >= Duration::from_millis(700), "{table}");
    assert!(protected.p99 < unprotected.p99, "{table}");

    // The second hop: the protected service's attempts carry their budget, under
    // the attempt timeout, and the dependency stops the work of a latency spike
    // when that budget runs out; the unprotected service sends no deadline, so
    // the dependency works every spike to its end.
    let attempt = config.protection.attempt_timeout;
    let seen = protected
        .downstream_deadline
        .unwrap_or_else(|| panic!("no deadline arrived downstream:\n{table}"));
    assert!(
        seen <= attempt,
        "{seen:?} over the attempt timeout:\n{table}"
    );
    assert!(seen >= attempt / 2, "{seen:?}:\n{table}");
    assert_eq!(unprotected.downstream_deadline, None, "{table}");
    assert_eq!(unprotected.downstream_stopped, 0, "{table}");
    assert!(protected.downstream_stopped > 0, "{table}");
    // Fallbacks are served, and every request gets an answer.
    let outage_fallbacks: u64 = protected.buckets[first..end]
        .iter()
        .map(|b| b.fallback)
        .sum();
    assert!(outage_fallbacks > 0, "{table}");
    assert!(protected.success_rate_with_fallbacks() >= 0.99, "{table}");
    assert!(protected.success_rate_with_fallbacks() > unprotected.success_rate_with_fallbacks());

    // After recovery the breaker closes and the dependency serves again.
    assert_eq!(
        protected.buckets.last().unwrap().breaker,
        Some(BreakerView::Closed),
        "{table}"
    );
    let (recovery_start, recovery_end) = config.timeline.span_of(Phase::Recovery).unwrap();
    let recovered = protected
        .recover
        .unwrap_or_else(|| panic!("never recovered:\n{table}"));
    assert!(recovered <= (recovery_end - recovery_start) / 2, "{table}");

    // The health endpoint said so along the way.
    // The health endpoint said so along the way: a warning while the fallback
    // answered, never a failure that would have taken the service out.
    let seen: Vec<Status> = result.health.iter().map(|h| h.1).collect();
    assert!(seen.contains(&Status::Pass), "{seen:?}");
    assert!(seen.contains(&Status::Warn), "{seen:?}");
    assert!(!seen.contains(&Status::Fail), "{seen:?}");
    assert_eq!(seen.last(), Some(&Status::Pass), "{seen:?}");

    // Nothing is left: no connection open at the dependencies, no task.
    for stats in &result.dependencies {
        assert_eq!(stats.open_connections, 0);
    }
    assert_no_live_tasks().await;
}
