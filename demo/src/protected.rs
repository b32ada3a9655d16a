//! The protected service: the same reqwest client of the dependency, through
//! Palisade's `PipelineMiddleware`.

use std::sync::Arc;
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration, State, WindowConfig};
use palisade::clock::Timestamp;
use palisade::health::{Observation, Observe};
use palisade::limit::{Bulkhead, BulkheadConfig};
use palisade::reqwest::{PipelineMiddleware, ReqwestClassifier, pipeline_error};
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::{Context, Pipeline};
use reqwest_middleware::ClientWithMiddleware;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::health::BreakerView;
use crate::load::{CallAttempts, CallFuture, Failure, Served, Service, Transport};
use crate::services::WORK_PATH;

/// The protected service's settings. Request-level timings stay fixed when a
/// scenario is compressed; the breaker's windows and open time scale with it.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ProtectionConfig {
    /// Each attempt's own timeout. Default 150 ms: a healthy answer on loopback
    /// takes a few milliseconds, so 150 ms only cuts spikes, and leaves room for
    /// several attempts within a one-second deadline.
    pub attempt_timeout: Duration,
    /// Attempts per request, the first included. Default 3.
    pub max_attempts: u32,
    /// The first retry's backoff ceiling (exponential, full jitter). Default 25 ms.
    pub backoff_base: Duration,
    /// The backoff cap. Default 250 ms: a retry that waits longer would not fit in
    /// the deadline after an attempt timeout.
    pub backoff_cap: Duration,
    /// Retries allowed as a share of requests, in percent. Default 20: a failing
    /// dependency sees at most 1.2 times the offered load, never 3 times.
    pub retry_budget_percent: u32,
    /// Retries allowed per second whatever the request rate. Default 5, so a quiet
    /// service can still retry.
    pub retry_budget_min_per_sec: u32,
    /// The window the retry budget counts over. Default 2 s (scaled): long enough
    /// to smooth a burst, short enough for a short demo.
    pub retry_budget_window: Duration,
    /// The breaker's failure-rate threshold, in percent. Default 50.
    pub failure_rate_percent: u32,
    /// The breaker's sliding window. Default 2 s (scaled).
    pub breaker_window: Duration,
    /// Calls the window must hold before the breaker judges. Default 10.
    pub breaker_min_calls: u32,
    /// How long the breaker stays open before probing. Default 1 s (scaled).
    pub open_duration: Duration,
    /// Probe calls allowed while half-open. Default 2.
    pub half_open_probes: u32,
    /// How long before the request's deadline the pipeline gives up, so that the
    /// fallback still answers in time. Default 100 ms.
    pub fallback_reserve: Duration,
    /// Calls in flight at once. Default 32: at 50 requests per second with
    /// 150 ms attempts, about 8 are in flight; 32 leaves room for bursts and
    /// bounds the damage of a stuck dependency.
    pub max_concurrent: u32,
}

impl Default for ProtectionConfig {
    fn default() -> Self {
        ProtectionConfig {
            attempt_timeout: Duration::from_millis(150),
            max_attempts: 3,
            backoff_base: Duration::from_millis(25),
            backoff_cap: Duration::from_millis(250),
            retry_budget_percent: 20,
            retry_budget_min_per_sec: 5,
            retry_budget_window: Duration::from_secs(2),
            failure_rate_percent: 50,
            breaker_window: Duration::from_secs(2),
            breaker_min_calls: 10,
            open_duration: Duration::from_secs(1),
            half_open_probes: 2,
            fallback_reserve: Duration::from_millis(100),
            max_concurrent: 32,
        }
    }
}

impl ProtectionConfig {
    /// The same settings with the breaker's window and open time and the retry
    /// budget's window scaled by `factor`, in `0.01..=10`. The budget's window
    /// stays at least 1 s, the shortest a retry budget takes.
    pub fn scaled(mut self, factor: f64) -> Result<Self, String> {
        if !(0.01..=10.0).contains(&factor) {
            return Err(format!(
                "protection: scale factor is {factor}; allowed: 0.01..=10"
            ));
        }
        self.breaker_window = self.breaker_window.mul_f64(factor);
        self.open_duration = self.open_duration.mul_f64(factor);
        self.retry_budget_window = self
            .retry_budget_window
            .mul_f64(factor)
            .max(Duration::from_secs(1));
        Ok(self)
    }
}

/// The service through reqwest with Palisade's `PipelineMiddleware`: total
/// timeout, retry under a budget, breaker, bulkhead, attempt timeout, and a
/// static default answering whatever the pipeline gave up on.
///
/// The client is `reqwest_middleware::ClientBuilder::new(reqwest::Client)`
/// `.with(PipelineMiddleware::new(pipeline))`, then the transport's attempt
/// counter: the middleware after the pipeline runs once per attempt.
#[derive(Clone, Debug)]
pub struct Protected {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: ClientWithMiddleware,
    pipeline: Pipeline<ReqwestClassifier>,
    breaker: Breaker,
    url: String,
    /// Executions the static default answered.
    fallbacks: AtomicU64,
    /// The report of the first execution that gave up, before its fallback
    /// answered.
    sample: OnceLock<String>,
}

/// What the health endpoint observes of the protected service: its pipeline,
/// with the fallback that answers for it.
#[derive(Clone, Debug)]
pub struct Observed(Arc<Inner>);

impl Observe for Observed {
    fn observe(&self) -> Observation {
        let mut o = self.0.pipeline.observe();
        o.has_fallback = true;
        o.fallback_served = self.0.fallbacks.load(Relaxed);
        o
    }
}

impl Protected {
    /// The pipeline the service calls through, with its fallback: what its
    /// health judges.
    pub fn pipeline(&self) -> Observed {
        Observed(self.inner.clone())
    }

    /// The report of the first execution that gave up (its retries ran out),
    /// before the fallback answered it: what its error says.
    pub fn sample_report(&self) -> Option<String> {
        self.inner.sample.get().cloned()
    }

    /// The protected service over `transport`, for requests with `deadline`.
    pub fn new(
        transport: Transport,
        config: &ProtectionConfig,
        deadline: Duration,
    ) -> Result<Self, String> {
        let total = deadline.checked_sub(config.fallback_reserve).ok_or_else(|| {
            format!(
                "protection: fallback_reserve is {:?}; allowed: less than the deadline ({deadline:?})",
                config.fallback_reserve
            )
        })?;
        let backoff = Backoff::exponential(config.backoff_base)
            .jitter(Jitter::Full)
            .max_delay(config.backoff_cap)
            .max_attempts(config.max_attempts)
            .build()
            .map_err(|e| format!("protection: {e}"))?;
        let budget = RetryBudget::builder()
            .retry_ratio(f64::from(config.retry_budget_percent) / 100.0)
            .min_retries_per_sec(config.retry_budget_min_per_sec)
            .window(config.retry_budget_window)
            .build()
            .map_err(|e| format!("protection: {e}"))?;
        let retry = RetryPolicy::builder()
            .backoff(backoff)
            .budget(budget)
            .build()
            .map_err(|e| format!("protection: {e}"))?;
        let breaker = Breaker::builder(
            BreakerConfig::default()
                .failure_rate_threshold(Some(f64::from(config.failure_rate_percent)))
                .minimum_calls(config.breaker_min_calls)
                .window(WindowConfig::Time {
                    buckets: 10,
                    bucket_width: config.breaker_window / 10,
                })
                .open(OpenDuration::fixed(config.open_duration))
                .half_open_probes(config.half_open_probes),
        )
        .name("dependency")
        .build()
        .map_err(|e| format!("protection: {e}"))?;
        let bulkhead = Bulkhead::new(BulkheadConfig::new(config.max_concurrent))
            .map_err(|e| format!("protection: {e}"))?;
        // Responses by status and `Retry-After`; errors by what failed (a
        // refused connection was not delivered, a reset may have been).
        let pipeline = Pipeline::builder("dependency")
            .classifier(ReqwestClassifier::new())
            .total_timeout(total)
            .retry(retry)
            .breaker(breaker.clone())
            .bulkhead(bulkhead)
            .attempt_timeout(config.attempt_timeout)
            .build()
            .map_err(|e| format!("protection: {e}"))?;
        let client = reqwest_middleware::ClientBuilder::new(transport.http().clone())
            .with(PipelineMiddleware::new(pipeline.clone()))
            .with(transport.counter())
            .build();
        Ok(Protected {
            inner: Arc::new(Inner {
                client,
                pipeline,
                breaker,
                url: transport.url(WORK_PATH),
                fallbacks: AtomicU64::new(0),
                sample: OnceLock::new(),
            }),
        })
    }
}

impl Inner {
    /// The static default answers: counted, and the first report of
    /// retries that ran out kept.
    fn fallback(&self, error: Option<&reqwest_middleware::Error>) -> Served {
        if let Some(e) = error.and_then(pipeline_error) {
            if e.is_retries_exhausted() && e.history().len() > 1 {
                self.sample.get_or_init(|| e.report().to_string());
            }
        }
        self.fallbacks.fetch_add(1, Relaxed);
        Served::Fallback
    }
}

impl Service for Protected {
    fn name(&self) -> &str {
        "palisade"
    }

    fn call(&self, deadline: Timestamp, attempts: CallAttempts) -> CallFuture {
        let inner = self.inner.clone();
        Box::pin(async move {
            #[allow(clippy::disallowed_methods)] // each simulated request begins here
            let (ctx, _guard) = Context::background().with_deadline(deadline);
            // The context rides in the extensions: each attempt's budget,
            // trace and request id travel to the dependency.
            let result = inner
                .client
                .get(&inner.url)
                .with_extension(ctx)
                .with_extension(attempts)
                .send()
                .await;
            match result {
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(_) => Served::Dependency,
                    Err(_) => inner.fallback(None),
                },
                // What the pipeline still calls a failure after its retries
                // (the last 503): the default answers.
                Ok(response)
                    if inner
                        .pipeline
                        .classifier()
                        .classify_response(&response)
                        .is_failure() =>
                {
                    inner.fallback(None)
                }
                Ok(response) => Served::Failed(Failure::Status(response.status().as_u16())),
                Err(error) => inner.fallback(Some(&error)),
            }
        })
    }

    fn breaker(&self) -> Option<BreakerView> {
        Some(match self.inner.breaker.state() {
            State::Open | State::ForcedOpen => BreakerView::Open,
            State::HalfOpen => BreakerView::HalfOpen,
            _ => BreakerView::Closed,
        })
    }
}
