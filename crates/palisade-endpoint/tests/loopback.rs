#![allow(clippy::disallowed_methods)] // a test is the root: it binds servers, spawns tasks, reads real time
//! Five real HTTP servers on 127.0.0.1 behind one balancer: one fails 30 % of its
//! requests and one is many times slower. The bad one is ejected and traffic moves
//! to the others, the slow one draws a small share, and the bad one is readmitted
//! after its probation. Then a stampede of concurrent coalesced calls reaches a
//! server as one request.
//!
//! Latencies are real (loopback, a 5 ms sleep for the slow server); ejection and
//! probation times are virtual: the detector's clock is the monotonic clock plus
//! an offset the test advances.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_classify::Outcome;
use palisade_clock::{Clock, MonotonicClock, Timestamp, TokioSleep};
use palisade_context::Context;
use palisade_endpoint::{
    Balance, BalanceError, Coalesce, EndpointState, Event, OutlierConfig, Outliers,
};
use tokio::sync::Notify;
use tower::{Service, ServiceExt, service_fn};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// Real time plus an offset the test moves forward.
#[derive(Clone, Debug, Default)]
struct Skipping {
    offset: Arc<AtomicU64>,
}

impl Skipping {
    fn skip(&self, by: Duration) {
        self.offset
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset.load(Ordering::SeqCst))
    }
}

impl Clock for Skipping {
    type Sleep = TokioSleep;
    fn now(&self) -> Timestamp {
        MonotonicClock.now().saturating_add(self.offset())
    }
    fn sleep_until(&self, deadline: Timestamp) -> TokioSleep {
        MonotonicClock.sleep_until(deadline.saturating_sub(self.offset()))
    }
}

/// What one replica does, and what it saw.
#[derive(Default)]
struct Replica {
    hits: AtomicUsize,
    /// Fails 3 of every 10 requests while set.
    flaky: AtomicBool,
    slow: bool,
}

async fn handle(State(r): State<Arc<Replica>>) -> StatusCode {
    let n = r.hits.fetch_add(1, Ordering::SeqCst);
    if r.slow {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if r.flaky.load(Ordering::SeqCst) && n % 10 < 3 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// `n` calls, `concurrency` in flight at a time (a new one as soon as one
/// ends); the number that succeeded.
async fn drive<S>(balance: &mut S, n: usize, concurrency: usize) -> usize
where
    S: Service<(), Response = StatusCode, Error = BalanceError<hyper_util::client::legacy::Error>>,
{
    let mut ok = 0;
    let mut started = 0;
    let mut in_flight = FuturesUnordered::new();
    while started < n || !in_flight.is_empty() {
        while started < n && in_flight.len() < concurrency {
            in_flight.push(balance.ready().await.unwrap().call(()));
            started += 1;
        }
        if let Some(r) = in_flight.next().await {
            ok += usize::from(matches!(r, Ok(s) if s.is_success()));
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_replica_is_ejected_traffic_moves_and_it_is_readmitted() {
    let names = ["r0", "r1", "bad", "slow", "r4"];
    let replicas: HashMap<&str, Arc<Replica>> = names
        .iter()
        .map(|&n| {
            let r = Replica {
                flaky: AtomicBool::new(n == "bad"),
                slow: n == "slow",
                ..Replica::default()
            };
            (n, Arc::new(r))
        })
        .collect();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut endpoints = Vec::new();
    for name in names {
        let router = Router::new()
            .route("/", get(handle))
            .with_state(replicas[name].clone());
        let uri: http::Uri = format!("http://{}/", serve(router).await).parse().unwrap();
        let client = client.clone();
        let service = service_fn(move |()| {
            let fut = client.get(uri.clone());
            async move { fut.await.map(|r| r.status()) }
        });
        endpoints.push((name, service));
    }

    let clock = Skipping::default();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let config = OutlierConfig::default()
        .with_failure_rate(Some(20.0))
        .with_minimum_calls(20)
        .with_interval(Duration::from_millis(500));
    let outliers = Outliers::builder(config)
        .clock(clock.clone())
        .name("loopback")
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let classify = |r: &Result<StatusCode, hyper_util::client::legacy::Error>| match r {
        Ok(s) if s.is_server_error() => Outcome::Permanent,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::transient(),
    };
    let mut balance = Balance::builder(outliers.clone())
        .classify(classify)
        .seed(3)
        .endpoints(endpoints);
    let hits = |n: &str| replicas[n].hits.load(Ordering::SeqCst);

    // Before the first judgement: every replica takes calls, the bad one fails some.
    let before = drive(&mut balance, 400, 10).await;
    assert!(before < 400, "the bad replica failed some calls");
    assert!(hits("bad") > 0);
    // Choosing on load alone already gives the slow replica the smallest share.
    let fastest = ["r0", "r1", "r4"].map(hits);
    assert!(
        fastest.iter().all(|&f| hits("slow") < f),
        "slow {} fast {fastest:?}",
        hits("slow")
    );

    // The rules are judged: the bad replica (30 % failures) is ejected.
    clock.skip(Duration::from_secs(1));
    outliers.tick(clock.now());
    assert!(
        matches!(
            balance.health(&"bad").unwrap().state(),
            EndpointState::Ejected { .. }
        ),
        "events: {:?}",
        events.lock().unwrap()
    );

    // Traffic moves: no more calls to it, and at least 99.5 % succeed. The slow
    // replica, ejected by the latency rule or still in rotation, takes less than
    // a fair share (25 % of four).
    let bad_before = hits("bad");
    let slow_before = hits("slow");
    let total: usize = names.iter().map(|n| hits(n)).sum();
    let after = drive(&mut balance, 1000, 10).await;
    assert!(after >= 995, "{after} of 1000 succeeded");
    assert_eq!(hits("bad"), bad_before, "the ejected replica took calls");
    let slow_share = (hits("slow") - slow_before) as f64 / 1000.0;
    assert!(
        slow_share < 0.2,
        "the slow replica took {slow_share} of the calls"
    );
    assert_eq!(names.iter().map(|n| hits(n)).sum::<usize>(), total + 1000);

    // The bad replica recovers; its ejection ends; it passes probation.
    replicas["bad"].flaky.store(false, Ordering::SeqCst);
    clock.skip(Duration::from_secs(30));
    outliers.tick(clock.now());
    assert_eq!(
        balance.health(&"bad").unwrap().state(),
        EndpointState::Probation
    );
    let last = drive(&mut balance, 400, 10).await;
    assert!(last >= 398, "{last} of 400");
    assert!(hits("bad") > bad_before, "readmitted");
    assert_eq!(
        balance.health(&"bad").unwrap().state(),
        EndpointState::Healthy
    );
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Ejected { endpoint, .. } if endpoint == "\"bad\""))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Probation { endpoint } if endpoint == "\"bad\""))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Restored { endpoint } if endpoint == "\"bad\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_of_coalesced_calls_reaches_the_server_once() {
    #[derive(Default)]
    struct Upstream {
        hits: AtomicUsize,
        gate: Notify,
    }
    async fn slow(State(u): State<Arc<Upstream>>) -> &'static str {
        u.hits.fetch_add(1, Ordering::SeqCst);
        u.gate.notified().await;
        "value"
    }
    let upstream = Arc::new(Upstream::default());
    let addr = serve(
        Router::new()
            .route("/", get(slow))
            .with_state(upstream.clone()),
    )
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();

    let coalesce: Coalesce<&str, u16, String> = Coalesce::new();
    let ctx = Context::background();
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let client = client.clone();
            let uri = uri.clone();
            coalesce.call(&ctx, "hot", move |_ctx| async move {
                let r = client.get(uri).await.map_err(|e| e.to_string())?;
                Ok(r.status().as_u16())
            })
        })
        .collect();
    let calls = tokio::spawn(join_all(calls));
    // Wait (boundedly) for the one request to reach the server, then release it.
    for _ in 0..2000 {
        if upstream.hits.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    upstream.gate.notify_one();
    let results = calls.await.unwrap();
    assert!(results.iter().all(|r| matches!(r, Ok(200))));
    assert_eq!(
        upstream.hits.load(Ordering::SeqCst),
        1,
        "one upstream request"
    );
}
