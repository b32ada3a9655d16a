//! The goodput benchmark (`cargo xtask overload`): a real HTTP server on
//! 127.0.0.1 whose handler has a fixed capacity (a semaphore of `C` slots, each
//! request holding one for `S`), driven by an open-loop load generator (arrivals at
//! a fixed rate, each request with a deadline header, given up at its deadline) at
//! 1×, 2× and 4× capacity with 10 % critical traffic. Side by side in one run:
//! unprotected; tower's `ConcurrencyLimit` + `LoadShed` at the best fixed limit
//! (`C`, the true capacity); palisade's admission layer (Vegas limit).
//!
//! ```text
//! cargo run --release -p palisade --example overload --features tower,http,limit [-- --quick]
//! ```
#![allow(clippy::disallowed_methods)] // a benchmark is the root: it spawns, sleeps and reads the wall clock

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::admission::AdmissionLayer;
use palisade::edge::Inbound;
use palisade::limit::adaptive::{AdaptiveConfig, VegasConfig};
use palisade::limit::admission::AdmissionConfig;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// Slots of the handler.
const C: usize = 4;
/// Service time of one request.
const S: Duration = Duration::from_millis(20);
/// Each request's deadline.
const DEADLINE: Duration = Duration::from_millis(100);

fn capacity() -> f64 {
    C as f64 / S.as_secs_f64()
}

#[derive(Default)]
struct ServerStats {
    processed: AtomicU64,
    wasted: AtomicU64,
}

/// A request's use of a slot, from the moment it holds one.
struct Work {
    stats: Arc<ServerStats>,
    base: Instant,
    gives_up: Duration,
}

impl Drop for Work {
    fn drop(&mut self) {
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        if self.base.elapsed() > self.gives_up {
            self.stats.wasted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Setup {
    Unprotected,
    TowerFixed,
    Palisade,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Unprotected => "unprotected",
            Setup::TowerFixed => "tower ConcurrencyLimit(4) + LoadShed",
            Setup::Palisade => "palisade admission (Vegas)",
        }
    }
}

async fn serve(
    setup: Setup,
    stats: Arc<ServerStats>,
    base: Instant,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let slots = Arc::new(Semaphore::new(C));
    let handler = move |headers: HeaderMap| {
        let slots = slots.clone();
        let stats = stats.clone();
        async move {
            let sent = headers
                .get("x-sent-us")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            let _slot = slots.acquire().await.unwrap();
            // From here the slot is spent on this request: counted as wasted if its
            // caller has given up by the time the work ends (done or cancelled).
            let _work = Work {
                stats,
                base,
                gives_up: Duration::from_micros(sent) + DEADLINE,
            };
            tokio::time::sleep(S).await;
            "ok"
        }
    };
    let app = match setup {
        Setup::Unprotected => Router::new().route("/", get(handler)),
        // The stack around the handler itself, so that each request goes through
        // one service's poll_ready and call.
        Setup::TowerFixed => Router::new().route_service(
            "/",
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    StatusCode::SERVICE_UNAVAILABLE
                }))
                .layer(tower::load_shed::LoadShedLayer::new())
                .layer(tower::limit::ConcurrencyLimitLayer::new(C))
                .service(axum::handler::HandlerWithoutStateExt::into_service(handler)),
        ),
        Setup::Palisade => {
            let mut vegas = VegasConfig::default();
            vegas.initial_limit = C as u32;
            vegas.min_limit = 2;
            vegas.max_limit = 64;
            let config = AdmissionConfig::default()
                .with_limit(AdaptiveConfig::Vegas(vegas))
                .with_queue(2 * C as u32, Duration::from_millis(50));
            let admission = AdmissionLayer::new(config).unwrap();
            Router::new()
                .route("/", get(handler))
                .layer(admission)
                .layer(Inbound::new().layer())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let handle = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, handle)
}

struct Row {
    setup: Setup,
    load: u32,
    goodput: f64,
    p50: Duration,
    p99: Duration,
    critical: f64,
    wasted: u64,
    processed: u64,
}

async fn phase(setup: Setup, load: u32, run: Duration, base: Instant) -> Row {
    let stats = Arc::new(ServerStats::default());
    let (addr, server) = serve(setup, stats.clone(), base).await;
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true); // no 40 ms Nagle / delayed-ACK stalls
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build::<_, Empty<Bytes>>(connector);
    // Load 0 stands for the unloaded reference, half the capacity.
    let rate = capacity() * if load == 0 { 0.5 } else { f64::from(load) };
    let n = (rate * run.as_secs_f64()) as u64;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for i in 0..n {
        ticker.tick().await;
        let critical = i % 10 == 0;
        let client = client.clone();
        let sent = base.elapsed().as_micros() as u64;
        tasks.push(tokio::spawn(async move {
            let request = http::Request::get(format!("http://{addr}/"))
                .header("x-request-timeout-ms", DEADLINE.as_millis().to_string())
                .header("x-sent-us", sent.to_string())
                .header(
                    "x-palisade-criticality",
                    if critical { "critical" } else { "default" },
                )
                .body(Empty::new())
                .unwrap();
            let t = Instant::now();
            let ok = match tokio::time::timeout(DEADLINE, client.request(request)).await {
                Ok(Ok(response)) => response.status() == StatusCode::OK,
                _ => false,
            };
            (critical, ok, t.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let (mut critical_sent, mut critical_ok) = (0u64, 0u64);
    for t in tasks {
        let (critical, ok, latency) = t.await.unwrap();
        if critical {
            critical_sent += 1;
        }
        if ok && latency <= DEADLINE {
            latencies.push(latency);
            if critical {
                critical_ok += 1;
            }
        }
    }
    let elapsed = start.elapsed().max(run);
    // Let abandoned handlers finish (bounded), so wasted work is counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.abort();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Row {
        setup,
        load,
        goodput: latencies.len() as f64 / elapsed.as_secs_f64() / capacity(),
        p50: at(0.5),
        p99: at(0.99),
        critical: critical_ok as f64 / critical_sent.max(1) as f64,
        wasted: stats.wasted.load(Ordering::Relaxed),
        processed: stats.processed.load(Ordering::Relaxed),
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let base = Instant::now();
    println!(
        "capacity: {C} slots × {} ms = {:.0} req/s; deadline {} ms; 10 % critical; {} s a phase\n",
        S.as_millis(),
        capacity(),
        DEADLINE.as_millis(),
        run.as_secs_f64()
    );
    let unloaded = phase(Setup::Unprotected, 0, run, base).await;
    println!(
        "unloaded (0.5×, unprotected): p50 {:.1} ms, p99 {:.1} ms\n",
        unloaded.p50.as_secs_f64() * 1e3,
        unloaded.p99.as_secs_f64() * 1e3
    );
    println!(
        "| setup | load | goodput (of capacity) | p50 | p99 | critical served | wasted work (of slots used) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for setup in [Setup::Unprotected, Setup::TowerFixed, Setup::Palisade] {
        for load in [1, 2, 4] {
            let r = phase(setup, load, run, base).await;
            println!(
                "| {} | {}× | {:.0} % | {:.1} ms | {:.1} ms | {:.1} % | {} ({}) |",
                r.setup.name(),
                r.load,
                r.goodput * 100.0,
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.critical * 100.0,
                r.wasted,
                r.processed
            );
        }
    }
}
