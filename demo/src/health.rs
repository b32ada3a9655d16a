//! The demo service's health, computed by `palisade::health`: the protected
//! dependency judged from its pipeline's counts (critical: it has a fallback, so
//! an open breaker whose fallback answers is `warn`, not `fail`), an active probe
//! of the dependency's `/probe` (optional: a probe alone cannot take the
//! service out), and the runtime's lag. Served on `127.0.0.1` at `/health`
//! (`application/health+json`), `/livez`, `/readyz` and `/startupz`.
//!
//! | status | when | HTTP |
//! | --- | --- | --- |
//! | `pass` | the dependency answers, the probe answers | 200 |
//! | `warn` | answers come from the fallback, or the probe fails | 200 |
//! | `fail` | the dependency is down and nothing answers for it, or the runtime lags by 2 s | 503 |

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use palisade::health::{Criticality, Groups, Health, ProbeConfig, Verdict};
use palisade_clock::{Clock, TokioClock};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::load::http_client;
use crate::server::PROBE_PATH;
use std::sync::Arc;

/// The path the health endpoint answers on.
pub const HEALTH_PATH: &str = "/health";

/// The default probe timeout: 200 ms. A healthy dependency on the same network
/// answers a probe in a few milliseconds; a probe that waits longer only
/// reports later that the dependency is slow.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A circuit breaker's state, as the demo's report and chart show it.
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

/// The health of the demo's protected service: `palisade::health` with the
/// dependency's pipeline, a probe of the dependency and the runtime's lag.
/// It evaluates, and probes, every `every`: a scaled-down scenario gets a
/// quicker health.
pub fn build(
    dependency: impl palisade::health::Observe,
    probe_addr: SocketAddr,
    probe_timeout: Duration,
    every: Duration,
) -> Result<Health, palisade::health::ConfigError> {
    let probe = http_client();
    let url: Arc<str> = format!("http://{probe_addr}{PROBE_PATH}").into();
    Health::builder()
        .evaluate_every(every)
        .dependency("dependency", Criticality::Critical, dependency)
        .probe(
            "dependency-probe",
            Criticality::Optional,
            Groups::READINESS,
            ProbeConfig::every(every).timeout(probe_timeout),
            move |_ctx| {
                let probe = probe.clone();
                let url = url.clone();
                async move {
                    match probe.get(&*url).send().await {
                        Ok(reply) if reply.status().is_success() => Verdict::pass(),
                        Ok(reply) => Verdict::fail(format!("probe answered {}", reply.status())),
                        Err(e) => Verdict::fail(format!("probe failed: {e}")),
                    }
                }
            },
        )
        // Generous thresholds: the demo shares its machine with its load.
        .runtime_lag(every, Duration::from_millis(250), Duration::from_secs(2))
        .start()
}

/// The health endpoint: `GET /health` on `127.0.0.1`, an ephemeral port.
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl HealthServer {
    /// Serves `health`'s endpoints until [`shutdown`](HealthServer::shutdown).
    pub async fn start(health: Health) -> io::Result<HealthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(serve(listener, health, cancel.clone(), tracker.clone()));
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
    health: Health,
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
        let health = health.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = service_fn(move |request| respond(request, health.clone()));
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
    health: Health,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let answer = health.respond(request.uri().path(), request.uri().query());
    Ok(answer.map(|body| Full::new(Bytes::from(body))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;
    use palisade::health::{Group, Status};

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_probe_only_warns() {
        // Nothing listens on port 1 of loopback: the probe fails, and is optional.
        let health = build(
            palisade::health::Observation::default,
            "127.0.0.1:1".parse().unwrap(),
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
        .unwrap();
        for _ in 0..5 {
            palisade_clock::TokioClock
                .sleep(Duration::from_secs(1))
                .await;
        }
        let report = health.report();
        assert_eq!(report.status(Group::Readiness), Status::Warn, "{report:?}");
        let probe = report.component("dependency-probe").unwrap();
        assert!(
            probe.verdict.output().unwrap().contains("probe failed"),
            "{probe:?}"
        );
        let answer = health.respond(HEALTH_PATH, None);
        assert_eq!(answer.status(), StatusCode::OK);
    }
}
