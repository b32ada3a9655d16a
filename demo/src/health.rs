//! The demo service's health: derived from breaker states and a probe of each
//! dependency with its own timeout, served as JSON.
//!
//! | status | when | HTTP |
//! | --- | --- | --- |
//! | `ready` | every breaker closed and every probe answered in time | 200 |
//! | `degraded` | some breaker not closed or some probe failed, but no dependency shows both | 200 |
//! | `unhealthy` | a dependency whose breaker is open and whose probe fails too | 503 |
//!
//! Two independent signals must agree before the service calls itself unhealthy: an
//! open breaker alone means the service is serving fallbacks (degraded, still worth
//! routing to), and a failed probe alone may be one lost packet.
//!
//! ```
//! use palisade_demo::health::{BreakerView, HealthStatus, Probe, derive_status};
//!
//! assert_eq!(derive_status([(Some(BreakerView::Closed), Probe::Ok)]), HealthStatus::Ready);
//! assert_eq!(derive_status([(Some(BreakerView::Open), Probe::Ok)]), HealthStatus::Degraded);
//! assert_eq!(derive_status([(Some(BreakerView::Open), Probe::TimedOut)]), HealthStatus::Unhealthy);
//! ```

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use palisade_clock::{Clock, TokioClock};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::HttpClient;
use crate::server::PROBE_PATH;

/// The path the health endpoint answers on.
pub const HEALTH_PATH: &str = "/health";

/// The default probe timeout: 200 ms. A healthy dependency on the same network
/// answers a probe in a few milliseconds; waiting longer only makes the health
/// endpoint itself slow when the dependency is not.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A circuit breaker's state, as health reads it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerView {
    /// Calls flow.
    Closed,
    /// A few probe calls test the dependency.
    HalfOpen,
    /// Calls are refused without reaching the dependency.
    Open,
}

impl BreakerView {
    /// `closed`, `half_open` or `open`.
    pub const fn name(self) -> &'static str {
        match self {
            BreakerView::Closed => "closed",
            BreakerView::HalfOpen => "half_open",
            BreakerView::Open => "open",
        }
    }
}

impl fmt::Display for BreakerView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a dependency probe went.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// It answered 2xx in time.
    Ok,
    /// It answered something else, or the connection failed.
    Failed,
    /// It did not answer within the probe timeout.
    TimedOut,
}

/// The service's overall health.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Fully working.
    Ready,
    /// Answering, some of it from fallbacks.
    Degraded,
    /// A dependency is confirmed down by its breaker and its probe.
    Unhealthy,
}

impl HealthStatus {
    /// `ready`, `degraded` or `unhealthy`.
    pub const fn name(self) -> &'static str {
        match self {
            HealthStatus::Ready => "ready",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The status that breaker states and probe results add up to (see the module
/// docs). A dependency without a breaker is judged by its probe alone, which then
/// can only degrade the service.
pub fn derive_status(
    dependencies: impl IntoIterator<Item = (Option<BreakerView>, Probe)>,
) -> HealthStatus {
    let mut status = HealthStatus::Ready;
    for (breaker, probe) in dependencies {
        let probe_ok = probe == Probe::Ok;
        let this = match (breaker, probe_ok) {
            (Some(BreakerView::Open), false) => HealthStatus::Unhealthy,
            (None | Some(BreakerView::Closed), true) => HealthStatus::Ready,
            _ => HealthStatus::Degraded,
        };
        status = status.max_by_severity(this);
    }
    status
}

impl HealthStatus {
    fn max_by_severity(self, other: HealthStatus) -> HealthStatus {
        let rank = |s: HealthStatus| match s {
            HealthStatus::Ready => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Unhealthy => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// One dependency's part of a health report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DependencyHealth {
    /// Its name.
    pub name: String,
    /// Its breaker's state, if it has one.
    pub breaker: Option<BreakerView>,
    /// How its probe went.
    pub probe: Probe,
    /// How long the probe took, in milliseconds.
    pub probe_ms: u64,
}

/// A health report: the status and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// The overall status.
    pub status: HealthStatus,
    /// Each dependency.
    pub dependencies: Vec<DependencyHealth>,
}

impl HealthReport {
    /// The report as JSON, as the endpoint serves it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a health report serializes")
    }
}

/// Reads a breaker's state.
pub type BreakerSource = Arc<dyn Fn() -> Option<BreakerView> + Send + Sync>;

struct Checked {
    name: String,
    breaker: BreakerSource,
    probe: HttpClient,
}

impl fmt::Debug for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checked")
            .field("name", &self.name)
            .field("breaker", &(self.breaker)())
            .finish_non_exhaustive()
    }
}

/// The health check: a set of dependencies, each with a breaker and a probe.
#[derive(Debug)]
pub struct HealthCheck {
    dependencies: Vec<Checked>,
    probe_timeout: Duration,
}

impl HealthCheck {
    /// A check with no dependency and the default probe timeout.
    pub fn new() -> Self {
        HealthCheck {
            dependencies: Vec::new(),
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// Sets the probe timeout, in `1ms..=10s`.
    pub fn probe_timeout(mut self, timeout: Duration) -> Result<Self, String> {
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&timeout) {
            return Err(format!(
                "health: probe_timeout is {timeout:?}; allowed: 1ms..=10s"
            ));
        }
        self.probe_timeout = timeout;
        Ok(self)
    }

    /// Adds a dependency probed with `GET /probe` at `addr` through its own client.
    pub fn dependency(
        mut self,
        name: impl Into<String>,
        addr: SocketAddr,
        breaker: BreakerSource,
    ) -> Self {
        self.dependencies.push(Checked {
            name: name.into(),
            breaker,
            probe: HttpClient::new(addr),
        });
        self
    }

    /// Probes every dependency (concurrently, each within the probe timeout) and
    /// reads every breaker.
    pub async fn check(&self) -> HealthReport {
        let clock = TokioClock;
        let probes = self.dependencies.iter().map(|d| async move {
            let began = clock.now();
            let probe = tokio::select! {
                r = d.probe.get(PROBE_PATH) => match r {
                    Ok(reply) if (200..300).contains(&reply.status()) => Probe::Ok,
                    _ => Probe::Failed,
                },
                _ = clock.sleep(self.probe_timeout) => Probe::TimedOut,
            };
            let took = clock.now().saturating_duration_since(began);
            DependencyHealth {
                name: d.name.clone(),
                breaker: (d.breaker)(),
                probe,
                probe_ms: took.as_millis() as u64,
            }
        });
        let dependencies = futures::future::join_all(probes).await;
        HealthReport {
            status: derive_status(dependencies.iter().map(|d| (d.breaker, d.probe))),
            dependencies,
        }
    }

    /// Closes the probes' connections and waits for their tasks.
    pub async fn shutdown(&self) {
        for d in &self.dependencies {
            d.probe.shutdown().await;
        }
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self::new()
    }
}

/// The health endpoint: `GET /health` on `127.0.0.1`, an ephemeral port.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl HealthServer {
    /// Serves `check` until [`shutdown`](HealthServer::shutdown).
    pub async fn start(check: Arc<HealthCheck>) -> io::Result<HealthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(serve(listener, check, cancel.clone(), tracker.clone()));
        Ok(HealthServer {
            addr,
            cancel,
            tracker,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, closes every connection and waits for every task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve(
    listener: TcpListener,
    check: Arc<HealthCheck>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                // Out of file descriptors or similar: back off instead of spinning.
                Err(_) => {
                    tokio::select! {
                        _ = TokioClock.sleep(Duration::from_millis(5)) => continue,
                        _ = cancel.cancelled() => return,
                    }
                }
            },
            _ = cancel.cancelled() => return,
        };
        let check = check.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = service_fn(move |request| respond(request, check.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    check: Arc<HealthCheck>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != HEALTH_PATH {
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))
            .expect("a valid response"));
    }
    let report = check.check().await;
    let status = match report.status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(report.to_json())))
        .expect("a valid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_needs_two_signals_to_be_unhealthy() {
        use BreakerView::*;
        assert_eq!(derive_status([]), HealthStatus::Ready);
        assert_eq!(derive_status([(None, Probe::Ok)]), HealthStatus::Ready);
        assert_eq!(
            derive_status([(None, Probe::Failed)]),
            HealthStatus::Degraded
        );
        assert_eq!(
            derive_status([(Some(HalfOpen), Probe::Ok)]),
            HealthStatus::Degraded
        );
        assert_eq!(
            derive_status([(Some(Closed), Probe::TimedOut)]),
            HealthStatus::Degraded
        );
        assert_eq!(
            derive_status([(Some(Open), Probe::Failed), (Some(Closed), Probe::Ok)]),
            HealthStatus::Unhealthy
        );
    }

    #[test]
    fn report_serializes_as_documented() {
        let report = HealthReport {
            status: HealthStatus::Degraded,
            dependencies: vec![DependencyHealth {
                name: "inventory".into(),
                breaker: Some(BreakerView::HalfOpen),
                probe: Probe::TimedOut,
                probe_ms: 200,
            }],
        };
        assert_eq!(
            report.to_json(),
            r#"{"status":"degraded","dependencies":[{"name":"inventory","breaker":"half_open","probe":"timed_out","probe_ms":200}]}"#
        );
    }

    #[test]
    fn probe_timeout_out_of_range_is_an_error() {
        let e = HealthCheck::new()
            .probe_timeout(Duration::ZERO)
            .unwrap_err();
        assert!(e.contains("probe_timeout"), "{e}");
    }
}
