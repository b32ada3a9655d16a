//! The goodput benchmark of `cargo xtask overload`: a real HTTP/2 server on
//! 127.0.0.1 whose handler has a fixed capacity (C slots, service time S), driven
//! by an open-loop load generator at 1×, 2× and 4× capacity with 10 % critical
//! traffic and a deadline on every request, behind three protections side by side:
//! none; tower's `ConcurrencyLimit` + `LoadShed` at the best fixed limit (C); and
//! palisade's inbound layer with the admission layer.
#![allow(clippy::disallowed_methods)] // a benchmark is the root: it spawns and reads the wall clock

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::admission::AdmissionLayer;
use palisade::edge::Inbound;
use palisade::limit::adaptive::{AdaptiveConfig, Gradient2Config};
use palisade::limit::admission::{AdmissionConfig, AdmissionController};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

/// Handler slots.
const C: usize = 8;
/// Service time.
const S: Duration = Duration::from_millis(10);
/// Each request's deadline.
const DEADLINE: Duration = Duration::from_millis(100);
/// Load per run.
const RUN: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protection {
    None,
    TowerFixed,
    Palisade,
}

impl Protection {
    fn name(self) -> &'static str {
        match self {
            Protection::None => "unprotected",
            Protection::TowerFixed => "tower ConcurrencyLimit(8) + LoadShed",
            Protection::Palisade => "palisade admission",
        }
    }
}

#[derive(Default)]
struct ServerStats {
    /// Services that ran to the end, or were cut, after the caller's deadline.
    wasted: AtomicU64,
    served: AtomicU64,
}

/// Counts a service as wasted unless it finished before its caller's deadline.
struct Work<'a> {
    stats: &'a ServerStats,
    deadline: Instant,
    done: bool,
}

impl Drop for Work<'_> {
    fn drop(&mut self) {
        if !self.done || Instant::now() > self.deadline {
            self.stats.wasted.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn handler(slots: Arc<Semaphore>, stats: Arc<ServerStats>, headers: HeaderMap) -> StatusCode {
    let arrived = Instant::now();
    let timeout = headers
        .get("x-request-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .map_or(DEADLINE, Duration::from_millis);
    let _slot = slots.acquire().await.unwrap();
    let mut work = Work {
        stats: &stats,
        deadline: arrived + timeout,
        done: false,
    };
    tokio::time::sleep(S).await;
    work.done = true;
    stats.served.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn serve(
    protection: Protection,
) -> (SocketAddr, Arc<ServerStats>, tokio::task::JoinHandle<()>) {
    let slots = Arc::new(Semaphore::new(C));
    let stats = Arc::new(ServerStats::default());
    let (sl, st) = (slots.clone(), stats.clone());
    let route = Router::new().route(
        "/work",
        get(move |headers: HeaderMap| handler(sl.clone(), st.clone(), headers)),
    );
    let app = match protection {
        Protection::None => route,
        Protection::TowerFixed => route.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    StatusCode::SERVICE_UNAVAILABLE
                }))
                .load_shed()
                .concurrency_limit(C),
        ),
        Protection::Palisade => {
            let mut g = Gradient2Config::default();
            g.initial_limit = C as u32;
            g.min_limit = 1;
            g.max_limit = 64;
            // Waits short against a 10 ms service: a queue of about two services.
            let config = AdmissionConfig::new(AdaptiveConfig::Gradient2(g))
                .with_queue(64, Duration::from_millis(20));
            let controller = AdmissionController::new(config).unwrap();
            route
                .layer(AdmissionLayer::new(controller))
                .layer(Inbound::new().layer())
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, stats, server)
}

struct Row {
    protection: Protection,
    load: f64,
    goodput: f64,
    p50: Duration,
    p99: Duration,
    critical: f64,
    wasted: f64,
}

async fn run(protection: Protection, load: f64) -> Row {
    let (addr, stats, server) = serve(protection).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let capacity = C as f64 / S.as_secs_f64();
    let rate = capacity * load;
    let n = (rate * RUN.as_secs_f64()) as u64;
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep_until(start + every.mul_f64(i as f64)).await;
        let critical = i % 10 == 0;
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let request = hyper::Request::get(format!("http://{addr}/work"))
                .header("x-request-timeout-ms", DEADLINE.as_millis().to_string())
                .header(
                    "x-palisade-criticality",
                    if critical { "critical" } else { "sheddable" },
                )
                .body(Empty::new())
                .unwrap();
            let sent = Instant::now();
            let answer = tokio::time::timeout(DEADLINE, client.request(request)).await;
            let ok = matches!(&answer, Ok(Ok(r)) if r.status() == StatusCode::OK);
            (critical, ok.then(|| sent.elapsed()))
        }));
    }
    let mut latencies = Vec::new();
    let (mut critical_sent, mut critical_ok) = (0u64, 0u64);
    for t in tasks {
        let (critical, latency) = t.await.unwrap();
        critical_sent += u64::from(critical);
        if let Some(l) = latency {
            critical_ok += u64::from(critical);
            latencies.push(l);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let cut services finish counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.abort();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let served = stats.served.load(Ordering::Relaxed) + stats.wasted.load(Ordering::Relaxed);
    Row {
        protection,
        load,
        goodput: latencies.len() as f64 / elapsed / capacity,
        p50: pct(0.5),
        p99: pct(0.99),
        critical: critical_ok as f64 / critical_sent.max(1) as f64,
        wasted: stats.wasted.load(Ordering::Relaxed) as f64 / served.max(1) as f64,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    println!(
        "capacity: {C} slots x {} ms = {:.0} requests/s; deadline {} ms; {} s per run; 10 % critical, 90 % sheddable",
        S.as_millis(),
        C as f64 / S.as_secs_f64(),
        DEADLINE.as_millis(),
        RUN.as_secs()
    );
    println!();
    println!(
        "| load | protection | goodput (of capacity) | p50 | p99 | critical served | wasted work |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    runtime.block_on(async {
        for load in [1.0, 2.0, 4.0] {
            for protection in [
                Protection::None,
                Protection::TowerFixed,
                Protection::Palisade,
            ] {
                let r = run(protection, load).await;
                println!(
                    "| {:.0}x | {} | {:.0} % | {:.1} ms | {:.1} ms | {:.1} % | {:.1} % |",
                    r.load,
                    r.protection.name(),
                    r.goodput * 100.0,
                    r.p50.as_secs_f64() * 1e3,
                    r.p99.as_secs_f64() * 1e3,
                    r.critical * 100.0,
                    r.wasted * 100.0
                );
            }
        }
    });
    println!();
    println!("whole run: {:.1} s", started.elapsed().as_secs_f64());
}
