//! The whole scenario: the same load, at the same time, through each service
//! against its own scripted dependency, with the health endpoint polled live.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_clock::{Clock, TokioClock};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::health::{HEALTH_PATH, HealthServer};
use crate::load::{LoadConfig, Progress, Recorder, Service, Transport, http_client, run_load};
use crate::protected::{Protected, ProtectionConfig};
use crate::report::RunReport;
use crate::server::{Dependency, DependencyStats};
use crate::services::Unprotected;
use crate::timeline::{Behaviour, Phase, Timeline};
use palisade::health::Status as HealthStatus;

/// Which service a run puts under load.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunKind {
    /// [`Unprotected`]: one attempt within the deadline.
    Unprotected,
    /// [`Protected`]: through a Palisade pipeline.
    Protected,
}

/// Everything a scenario needs.
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// What the dependency does when.
    pub timeline: Timeline,
    /// How it misbehaves within its phases.
    pub behaviour: Behaviour,
    /// The load: its duration is the timeline's.
    pub rate: u32,
    /// Each request's deadline. Default 1 s.
    pub deadline: Duration,
    /// The protected service's pipeline.
    pub protection: ProtectionConfig,
    /// The runs, side by side in this order.
    pub runs: Vec<RunKind>,
    /// How many buckets the timeline is measured in, at most: each holds at least
    /// ten requests' worth of time. Default 160 (200 ms each in the demo): fine
    /// enough to time detection and recovery, coarse enough that a rate per bucket
    /// is not noise.
    pub buckets: usize,
    /// How often the live status is reported and the health endpoint polled.
    pub tick: Duration,
}

impl ScenarioConfig {
    /// The demo: the standard 32-second timeline at 50 requests per second.
    pub fn demo() -> Self {
        ScenarioConfig {
            timeline: Timeline::standard(),
            behaviour: Behaviour::default(),
            rate: 50,
            deadline: Duration::from_secs(1),
            protection: ProtectionConfig::default(),
            runs: vec![RunKind::Unprotected, RunKind::Protected],
            buckets: 160,
            tick: Duration::from_millis(250),
        }
    }

    /// The demo with the timeline and the protection's time-based settings scaled
    /// by `factor` (in `0.01..=10`); request-level timings (latencies, timeouts,
    /// deadline) stay as they are.
    pub fn compressed(factor: f64) -> Result<Self, String> {
        let mut config = ScenarioConfig::demo();
        config.timeline = config
            .timeline
            .compressed(factor)
            .map_err(|e| e.to_string())?;
        config.protection = config.protection.scaled(factor)?;
        config.tick = config.tick.mul_f64(factor).max(Duration::from_millis(50));
        Ok(config)
    }

    /// The load each run puts on its service.
    pub fn load(&self) -> LoadConfig {
        LoadConfig {
            rate: self.rate,
            duration: self.timeline.total(),
            deadline: self.deadline,
        }
    }
}

/// The live status, reported every tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveStatus {
    /// Time since the start of the timeline.
    pub elapsed: Duration,
    /// The whole timeline's length.
    pub total: Duration,
    /// The dependency's phase now.
    pub phase: Phase,
    /// Per run: its name and counters.
    pub runs: Vec<(String, Progress)>,
    /// The protected service's health, as its endpoint last answered.
    pub health: Option<HealthStatus>,
}

/// What a scenario measured.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// The timeline it followed.
    pub timeline: Timeline,
    /// Per run, in order.
    pub reports: Vec<RunReport>,
    /// Per run, its dependency's counters after shutdown.
    pub dependencies: Vec<DependencyStats>,
    /// The health endpoint's answers: when, and what it said.
    pub health: Vec<(Duration, HealthStatus)>,
    /// The protected service's first execution that gave up, as its error
    /// reports it (the fallback answered it).
    pub sample_report: Option<String>,
}

struct Run {
    dependency: Dependency,
    recorder: Arc<Recorder>,
    service: Arc<dyn Service>,
    protected: Option<Arc<Protected>>,
}

#[derive(Deserialize)]
struct HealthBody {
    status: HealthStatus,
}

/// Runs the scenario: each run against its own dependency, all at once, reporting
/// the live status to `on_tick`. Every server, client, connection and task it
/// started has ended when it returns.
pub async fn run_scenario(
    config: &ScenarioConfig,
    mut on_tick: impl FnMut(&LiveStatus),
) -> io::Result<ScenarioResult> {
    let load = config.load();
    load.validate().map_err(io::Error::other)?;
    let clock = TokioClock;
    let timeline = &config.timeline;
    // At least ten requests per bucket, so that rates per bucket are not noise.
    let bucket = (timeline.total() / config.buckets.max(1) as u32)
        .max(Duration::from_secs(10) / config.rate.max(1));
    let buckets = (timeline.total().as_nanos() / bucket.as_nanos()).max(1) as usize;
    // A moment to bind and connect before the timeline starts.
    let start = clock.now() + Duration::from_millis(100);
    let mut runs = Vec::new();
    let mut sample: Option<Arc<Protected>> = None;
    for &kind in &config.runs {
        let dependency = Dependency::start(timeline.clone(), config.behaviour, start).await?;
        let recorder = Arc::new(Recorder::new(start, bucket, buckets, timeline));
        let transport = Transport::new(dependency.addr(), recorder.clone());
        let (service, protected): (Arc<dyn Service>, Option<Arc<Protected>>) = match kind {
            RunKind::Unprotected => (Arc::new(Unprotected::new(transport)), None),
            RunKind::Protected => {
                let protected = Arc::new(
                    Protected::new(transport, &config.protection, config.deadline)
                        .map_err(io::Error::other)?,
                );
                sample = Some(protected.clone());
                (protected.clone() as Arc<dyn Service>, Some(protected))
            }
        };
        runs.push(Run {
            dependency,
            recorder,
            service,
            protected,
        });
    }

    // The health endpoint of the protected service (or of the first run).
    let watched = runs.iter().position(|r| r.protected.is_some()).unwrap_or(0);
    let probe_addr = runs[watched].dependency.addr();
    let every = config.tick.max(Duration::from_millis(100));
    let health = match &runs[watched].protected {
        Some(p) => crate::health::build(
            p.pipeline(),
            probe_addr,
            crate::health::DEFAULT_PROBE_TIMEOUT,
            every,
        ),
        None => crate::health::build(
            palisade::health::Observation::default,
            probe_addr,
            crate::health::DEFAULT_PROBE_TIMEOUT,
            every,
        ),
    }
    .map_err(io::Error::other)?;
    let health_server = HealthServer::start(health.clone()).await?;
    let health_log: Arc<Mutex<Vec<(Duration, HealthStatus)>>> = Arc::default();
    let stop_polling = CancellationToken::new();
    #[allow(clippy::disallowed_methods)] // the run's poller, stopped by `stop_polling`
    let poller = {
        let client = http_client();
        let url = format!("http://{}{HEALTH_PATH}", health_server.addr());
        let log = health_log.clone();
        let stop = stop_polling.clone();
        let tick = config.tick;
        tokio::spawn(async move {
            loop {
                let answer = tokio::select! {
                    r = async { client.get(&url).send().await?.bytes().await } => r.ok(),
                    _ = clock.sleep(Duration::from_secs(1)) => None,
                    _ = stop.cancelled() => break,
                };
                if let Some(body) =
                    answer.and_then(|r| serde_json::from_slice::<HealthBody>(&r).ok())
                {
                    let at = clock.now().saturating_duration_since(start);
                    log.lock().expect("not poisoned").push((at, body.status));
                }
                tokio::select! {
                    _ = clock.sleep(tick) => {}
                    _ = stop.cancelled() => break,
                }
            }
        })
    };

    #[allow(clippy::disallowed_methods)] // one load per service, each awaited below
    let mut loads: Vec<_> = runs
        .iter()
        .map(|r| tokio::spawn(run_load(r.service.clone(), load, r.recorder.clone())))
        .collect();
    let mut records = Vec::new();
    loop {
        let finished = loads.iter().all(|h| h.is_finished());
        let elapsed = clock.now().saturating_duration_since(start);
        let status = LiveStatus {
            elapsed: elapsed.min(timeline.total()),
            total: timeline.total(),
            phase: runs[0].dependency.phase(),
            runs: runs
                .iter()
                .map(|r| (r.service.name().to_owned(), r.recorder.progress()))
                .collect(),
            health: health_log.lock().expect("not poisoned").last().map(|h| h.1),
        };
        on_tick(&status);
        if finished {
            break;
        }
        clock.sleep(config.tick).await;
    }
    for handle in loads.drain(..) {
        records.push(handle.await.map_err(io::Error::other)?);
    }
    stop_polling.cancel();
    poller.await.map_err(io::Error::other)?;
    health_server.shutdown().await;
    health.stop();

    let mut reports = Vec::new();
    let mut dependencies = Vec::new();
    for (run, records) in runs.into_iter().zip(records) {
        reports.push(RunReport::new(
            run.service.name(),
            timeline,
            config.deadline,
            &records,
            bucket,
            &run.recorder.attempts_per_bucket(),
            &run.recorder.attempts_per_phase(),
            &run.recorder.breaker_per_bucket(),
        ));
        // The service and its client go first: the dependency's shutdown
        // then closes what connections are left.
        drop(run.service);
        drop(run.protected);
        let stats = run.dependency.shutdown().await;
        if let Some(report) = reports.last_mut() {
            report.downstream_deadline = stats.deadline_p50();
            report.downstream_stopped = stats.stopped_at_deadline;
        }
        dependencies.push(stats);
    }
    let health = std::mem::take(&mut *health_log.lock().expect("not poisoned"));
    Ok(ScenarioResult {
        timeline: timeline.clone(),
        reports,
        dependencies,
        health,
        sample_report: sample.and_then(|p| p.sample_report()),
    })
}
