//! End to end, on real sockets on loopback and in real time, but short: the demo's
//! scenario compressed, the scripted dependency alone, and the health endpoint.
//!
//! Every assertion is a bound with a margin that a busy two-core machine keeps;
//! every loop is bounded; every test ends with no live task and no open connection.
#![allow(clippy::disallowed_methods)] // tests may read the wall clock

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::time::Duration;

use palisade_clock::{Clock, TokioClock};
use palisade_demo::client::HttpClient;
use palisade_demo::health::{BreakerView, HEALTH_PATH, HealthCheck, HealthServer, HealthStatus};
use palisade_demo::server::{Dependency, PROBE_PATH};
use palisade_demo::services::WORK_PATH;
use palisade_demo::timeline::{Behaviour, Phase, Timeline};

/// Waits, boundedly, until every task of this runtime has ended.
async fn assert_no_live_tasks() {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..200 {
        if metrics.num_alive_tasks() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} tasks still alive", metrics.num_alive_tasks());
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
    let client = HttpClient::new(dependency.addr());
    // The middle of each phase, well clear of its edges.
    let at = |phase: usize| start + timeline.start_of(phase) + timeline.phases()[phase].1 / 2;

    clock.sleep_until(at(0)).await;
    let reply = client.get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body(), b"ok");

    clock.sleep_until(at(1)).await;
    let reply = client.get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 503);
    let outcome = palisade_classify::HttpStatus::new().classify_response(&reply);
    assert_eq!(outcome.retry_after(), Some(Duration::from_secs(1)));

    clock.sleep_until(at(2)).await;
    let error = client.get(WORK_PATH).await.unwrap_err();
    assert!(error.is_broken(), "{error:?}");

    clock.sleep_until(at(3)).await;
    let error = client.get(WORK_PATH).await.unwrap_err();
    assert!(error.is_refused(), "{error:?}");
    assert_eq!(dependency.phase(), Phase::Outage);

    clock.sleep_until(at(4)).await;
    let reply = client.get(WORK_PATH).await.unwrap();
    assert_eq!(reply.status(), 200, "back on the same port");
    assert_eq!(client.get(PROBE_PATH).await.unwrap().status(), 200);

    client.shutdown().await;
    assert_eq!(client.open_connections(), 0);
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
async fn health_needs_the_breaker_and_the_probe_to_agree() {
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
    // A breaker state the test sets by hand: 1 closed, 3 open.
    let breaker = Arc::new(AtomicU8::new(1));
    let source = {
        let breaker = breaker.clone();
        Arc::new(move || {
            Some(match breaker.load(Relaxed) {
                1 => BreakerView::Closed,
                2 => BreakerView::HalfOpen,
                _ => BreakerView::Open,
            })
        })
    };
    let check = Arc::new(
        HealthCheck::new()
            .probe_timeout(ms(300))
            .unwrap()
            .dependency("dependency", dependency.addr(), source),
    );
    let server = HealthServer::start(check.clone()).await.unwrap();
    let client = HttpClient::new(server.addr());
    let health = async |client: &HttpClient| {
        let reply = client.get(HEALTH_PATH).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
        (reply.status(), json)
    };

    let (status, json) = health(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("ready")),
        "{json}"
    );
    assert_eq!(json["dependencies"][0]["breaker"], "closed");
    assert_eq!(json["dependencies"][0]["probe"], "ok");

    breaker.store(3, Relaxed);
    let (status, json) = health(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (200, Some("degraded")),
        "{json}"
    );

    // The dependency goes down: an open breaker and a failed probe.
    clock.sleep_until(start + ms(2000)).await;
    let (status, json) = health(&client).await;
    assert_eq!(
        (status, json["status"].as_str()),
        (503, Some("unhealthy")),
        "{json}"
    );
    assert_ne!(json["dependencies"][0]["probe"], "ok");
    assert!(json["dependencies"][0]["probe_ms"].as_u64().unwrap() <= 300 + 100);

    // The probe alone failing, with the breaker closed: degraded.
    breaker.store(1, Relaxed);
    let (_, json) = health(&client).await;
    assert_eq!(json["status"], "degraded", "{json}");

    clock.sleep_until(start + ms(2700)).await;
    let (_, json) = health(&client).await;
    assert_eq!(json["status"], "ready", "{json}");
    let report = check.check().await;
    assert_eq!(report.status, HealthStatus::Ready);

    client.shutdown().await;
    server.shutdown().await;
    check.shutdown().await;
    let stats = dependency.shutdown().await;
    assert_eq!(stats.open_connections, 0);
    assert_no_live_tasks().await;
}
