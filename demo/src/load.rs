//! Steady load through a service under test, and what each request met.
//!
//! [`run_load`] starts requests at a fixed rate whatever happens to the earlier ones
//! (an open-loop load, as real traffic is), each with its own deadline, and records
//! per request when it started, how long it took, how it was served and how many
//! attempts it sent to the dependency. A [`Recorder`] also counts attempts per time
//! bucket, as they hit the wire, and samples the breaker state.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use palisade_classify::Strategy;
use palisade_clock::{Clock, Timestamp, TokioClock};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::BreakerView;
use crate::timeline::Timeline;

/// How one request was served.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Served {
    /// By the dependency.
    Dependency,
    /// By a fallback, after the dependency failed or a strategy refused the call.
    Fallback,
    /// Not at all.
    Failed(Failure),
}

/// Why a request failed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The dependency answered with this error status.
    Status(u16),
    /// The connection was refused or broke.
    Connection,
    /// The deadline passed.
    Timeout,
    /// A strategy refused the call and nothing fell back.
    Rejected(Strategy),
    /// The request outlived twice its deadline and the load generator gave up on
    /// it: a service that does not honour deadlines.
    Abandoned,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Connection => f.write_str("connection"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Rejected(s) => write!(f, "rejected by {s}"),
            Failure::Abandoned => f.write_str("abandoned"),
        }
    }
}

/// One request of a run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// When it started, from the start of the run.
    pub offset: Duration,
    /// How long it took.
    pub latency: Duration,
    /// How it was served.
    pub served: Served,
    /// The attempts it sent to the dependency.
    pub attempts: u32,
}

/// The future of one call through a [`Service`].
pub type CallFuture = Pin<Box<dyn Future<Output = Served> + Send>>;

/// A service under load: it serves one request by calling the dependency through
/// a [`Transport`], however it likes.
pub trait Service: Send + Sync + 'static {
    /// A short name for the table.
    fn name(&self) -> &str;

    /// Serves one request that must be done by `deadline`. Every attempt it sends
    /// goes through `transport.get(.., &attempts)`.
    fn call(&self, deadline: Timestamp, attempts: CallAttempts) -> CallFuture;

    /// The state of its circuit breaker, if it has one.
    fn breaker(&self) -> Option<BreakerView> {
        None
    }
}

/// The attempts of one call, counted as they are sent.
#[derive(Clone, Debug, Default)]
pub struct CallAttempts(Arc<AtomicU32>);

impl CallAttempts {
    /// How many attempts were sent so far.
    pub fn count(&self) -> u32 {
        self.0.load(Relaxed)
    }
}

/// How many idle connections a client keeps to the dependency; more are
/// closed. 64 covers the demo's concurrency at 50 requests per second with
/// 800 ms spikes.
const MAX_IDLE: usize = 64;

/// A reqwest client for the demo's loopback servers: a bounded keep-alive
/// pool, `TCP_NODELAY`, no proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IDLE)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .expect("a client without TLS or proxy settings builds")
}

/// The way to the dependency: a reqwest client of its address, whose every
/// attempt is counted as it reaches the wire.
#[derive(Clone, Debug)]
pub struct Transport {
    base: String,
    http: reqwest::Client,
    recorder: Arc<Recorder>,
}

impl Transport {
    /// A transport to the server at `addr` that reports attempts to `recorder`.
    pub fn new(addr: SocketAddr, recorder: Arc<Recorder>) -> Self {
        Transport {
            base: format!("http://{addr}"),
            http: http_client(),
            recorder,
        }
    }

    /// The URL of `path` on the dependency.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one attempt with the bare client: `GET path`, counted.
    pub async fn get(
        &self,
        path: &str,
        attempts: &CallAttempts,
    ) -> Result<reqwest::Response, reqwest::Error> {
        attempts.0.fetch_add(1, Relaxed);
        self.recorder.attempt();
        self.http.get(self.url(path)).send().await
    }

    /// The reqwest client underneath.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A middleware that counts each request passing it as one attempt (of
    /// the [`CallAttempts`] in its extensions, and of the recorder). Put
    /// after a `PipelineMiddleware`, it counts every attempt the pipeline
    /// sends, and none it does not (an attempt with too little of its
    /// deadline left).
    pub fn counter(&self) -> CountAttempts {
        CountAttempts {
            recorder: self.recorder.clone(),
        }
    }
}

/// The middleware of [`Transport::counter`].
#[derive(Clone, Debug)]
pub struct CountAttempts {
    recorder: Arc<Recorder>,
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for CountAttempts {
    async fn handle(
        &self,
        request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if let Some(attempts) = extensions.get::<CallAttempts>() {
            attempts.0.fetch_add(1, Relaxed);
        }
        self.recorder.attempt();
        next.run(request, extensions).await
    }
}

/// The load: a rate, a duration and a deadline per request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// Requests started per second, in `1..=2000`. The demo uses 50: enough for
    /// smooth percentiles, light enough for two runs on two busy cores.
    pub rate: u32,
    /// How long requests are started for, in `10ms..=1h`.
    pub duration: Duration,
    /// Each request's deadline, from its start, in `10ms..=60s`.
    pub deadline: Duration,
}

impl LoadConfig {
    /// Checks the fields, naming the one out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=2000).contains(&self.rate) {
            return Err(format!("load: rate is {}; allowed: 1..=2000", self.rate));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.duration) {
            return Err(format!(
                "load: duration is {:?}; allowed: 10ms..=1h",
                self.duration
            ));
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.deadline) {
            return Err(format!(
                "load: deadline is {:?}; allowed: 10ms..=60s",
                self.deadline
            ));
        }
        Ok(())
    }

    /// The number of requests the run starts.
    pub fn requests(&self) -> u64 {
        (self.duration.as_secs_f64() * f64::from(self.rate)).round() as u64
    }
}

/// A breaker state as one byte, for the sampled timeline (`0` not sampled).
fn breaker_code(view: Option<BreakerView>) -> u8 {
    match view {
        None => 0,
        Some(BreakerView::Closed) => 1,
        Some(BreakerView::HalfOpen) => 2,
        Some(BreakerView::Open) => 3,
    }
}

fn breaker_from_code(code: u8) -> Option<BreakerView> {
    match code {
        1 => Some(BreakerView::Closed),
        2 => Some(BreakerView::HalfOpen),
        3 => Some(BreakerView::Open),
        _ => None,
    }
}

/// A snapshot of a run in progress, for the live progress line.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Requests started.
    pub started: u64,
    /// Requests served by the dependency.
    pub dependency: u64,
    /// Requests served by a fallback.
    pub fallback: u64,
    /// Requests failed.
    pub failed: u64,
    /// Attempts sent to the dependency.
    pub attempts: u64,
    /// The breaker's state, if the service has one.
    pub breaker: Option<BreakerView>,
}

/// Counts attempts and outcomes as they happen, per time bucket from the start.
#[derive(Debug)]
pub struct Recorder {
    clock: TokioClock,
    start: Timestamp,
    bucket: Duration,
    attempts: Vec<AtomicU64>,
    phase_ends: Vec<Duration>,
    attempts_per_phase: Vec<AtomicU64>,
    breaker: Vec<AtomicU8>,
    started: AtomicU64,
    dependency: AtomicU64,
    fallback: AtomicU64,
    failed: AtomicU64,
    attempts_total: AtomicU64,
    breaker_now: AtomicU8,
}

impl Recorder {
    /// A recorder of `buckets` buckets of `bucket` each from `start`, which also
    /// counts attempts per phase of `timeline`; events past the last bucket or
    /// phase count in the last one.
    pub fn new(start: Timestamp, bucket: Duration, buckets: usize, timeline: &Timeline) -> Self {
        let buckets = buckets.max(1);
        let phases = timeline.phases().len();
        Recorder {
            clock: TokioClock,
            start,
            bucket: bucket.max(Duration::from_millis(1)),
            attempts: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            phase_ends: (1..=phases).map(|i| timeline.start_of(i)).collect(),
            attempts_per_phase: (0..phases).map(|_| AtomicU64::new(0)).collect(),
            breaker: (0..buckets).map(|_| AtomicU8::new(0)).collect(),
            started: AtomicU64::new(0),
            dependency: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            attempts_total: AtomicU64::new(0),
            breaker_now: AtomicU8::new(0),
        }
    }

    /// The start of the run.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The width of a bucket.
    pub fn bucket(&self) -> Duration {
        self.bucket
    }

    fn index(&self, at: Timestamp) -> usize {
        let since = at.saturating_duration_since(self.start);
        let i = (since.as_nanos() / self.bucket.as_nanos()) as usize;
        i.min(self.attempts.len() - 1)
    }

    fn attempt(&self) {
        let now = self.clock.now();
        let i = self.index(now);
        self.attempts[i].fetch_add(1, Relaxed);
        let since = now.saturating_duration_since(self.start);
        let phase = self
            .phase_ends
            .iter()
            .position(|&end| since < end)
            .unwrap_or(self.phase_ends.len() - 1);
        self.attempts_per_phase[phase].fetch_add(1, Relaxed);
        self.attempts_total.fetch_add(1, Relaxed);
    }

    fn breaker_sample(&self, view: Option<BreakerView>) {
        let code = breaker_code(view);
        self.breaker_now.store(code, Relaxed);
        let i = self.index(self.clock.now());
        // Keep the worst state seen within the bucket.
        self.breaker[i].fetch_max(code, Relaxed);
    }

    fn served(&self, served: Served) {
        match served {
            Served::Dependency => &self.dependency,
            Served::Fallback => &self.fallback,
            Served::Failed(_) => &self.failed,
        }
        .fetch_add(1, Relaxed);
    }

    /// Attempts sent per bucket.
    pub fn attempts_per_bucket(&self) -> Vec<u64> {
        self.attempts.iter().map(|a| a.load(Relaxed)).collect()
    }

    /// Attempts sent per phase of the timeline, in its order.
    pub fn attempts_per_phase(&self) -> Vec<u64> {
        self.attempts_per_phase
            .iter()
            .map(|a| a.load(Relaxed))
            .collect()
    }

    /// The worst breaker state sampled per bucket.
    pub fn breaker_per_bucket(&self) -> Vec<Option<BreakerView>> {
        self.breaker
            .iter()
            .map(|b| breaker_from_code(b.load(Relaxed)))
            .collect()
    }

    /// The counters so far.
    pub fn progress(&self) -> Progress {
        Progress {
            started: self.started.load(Relaxed),
            dependency: self.dependency.load(Relaxed),
            fallback: self.fallback.load(Relaxed),
            failed: self.failed.load(Relaxed),
            attempts: self.attempts_total.load(Relaxed),
            breaker: breaker_from_code(self.breaker_now.load(Relaxed)),
        }
    }
}

/// Starts `load.requests()` requests through `service` at a steady rate from the
/// recorder's start, and returns their records in start order once all are done.
/// `load` should have passed [`LoadConfig::validate`]; a rate of zero is taken as
/// one request per second.
///
/// Every task it spawns has ended when it returns. A request still running at twice
/// its deadline is dropped and recorded as [`Failure::Abandoned`], so a run is
/// bounded whatever the service does.
pub async fn run_load(
    service: Arc<dyn Service>,
    load: LoadConfig,
    recorder: Arc<Recorder>,
) -> Vec<Record> {
    let clock = TokioClock;
    let start = recorder.start();
    let interval = Duration::from_secs(1) / load.rate.max(1);
    let n = load.requests();
    let sampling = CancellationToken::new();
    #[allow(clippy::disallowed_methods)] // the run's sampler, stopped by `sampling`
    let sampler = {
        let service = service.clone();
        let recorder = recorder.clone();
        let stop = sampling.clone();
        let every = recorder.bucket() / 2;
        tokio::spawn(async move {
            loop {
                recorder.breaker_sample(service.breaker());
                tokio::select! {
                    _ = clock.sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
            }
        })
    };
    let mut tasks = JoinSet::new();
    let mut records = Vec::with_capacity(n as usize);
    for i in 0..n {
        let at = start + Duration::from_nanos(interval.as_nanos() as u64 * i);
        clock.sleep_until(at).await;
        while let Some(done) = tasks.try_join_next() {
            records.push(done.expect("a request task does not panic"));
        }
        let service = service.clone();
        let recorder = recorder.clone();
        recorder.started.fetch_add(1, Relaxed);
        tasks.spawn(async move {
            let began = clock.now();
            let deadline = began + load.deadline;
            let attempts = CallAttempts::default();
            let call = service.call(deadline, attempts.clone());
            let served = tokio::select! {
                served = call => served,
                _ = clock.sleep_until(began + load.deadline * 2) => Served::Failed(Failure::Abandoned),
            };
            recorder.served(served);
            Record {
                offset: began.saturating_duration_since(start),
                latency: clock.now().saturating_duration_since(began),
                served,
                attempts: attempts.count(),
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        records.push(done.expect("a request task does not panic"));
    }
    sampling.cancel();
    let _ = sampler.await;
    records.sort_by_key(|r| r.offset);
    records
}
