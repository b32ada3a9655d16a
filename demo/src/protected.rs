//! The protected service: the same client of the dependency through a Palisade
//! pipeline.

use std::sync::Arc;
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, OpenDuration, State, WindowConfig};
use palisade::classify::{ClassifyError, HttpResponse, HttpStatus, Outcome};
use palisade::clock::Timestamp;
use palisade::fallback::{Fallback, Trigger};
use palisade::limit::{Bulkhead, BulkheadConfig};
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::{Context, Error, Pipeline, WithFallback};

use crate::client::{HttpError, Reply};
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

/// What the protected service answers: the dependency's reply, or the fallback's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The dependency's reply.
    Fresh(Reply),
    /// The fallback's answer: a stale but valid default.
    Fallback,
}

impl HttpResponse for Answer {
    fn status_code(&self) -> u16 {
        match self {
            Answer::Fresh(reply) => reply.status_code(),
            Answer::Fallback => 200,
        }
    }

    fn retry_after_header(&self) -> Option<&[u8]> {
        match self {
            Answer::Fresh(reply) => reply.retry_after_header(),
            Answer::Fallback => None,
        }
    }
}

/// Responses by status and `Retry-After`; errors by what they are (a refused
/// connection was not delivered, a reset may have been).
fn classify(result: &Result<Answer, HttpError>) -> Outcome {
    match result {
        Ok(answer) => HttpStatus::new().classify_response(answer),
        Err(error) => error.outcome(),
    }
}

type Classifier = fn(&Result<Answer, HttpError>) -> Outcome;

/// The service through a pipeline: fallback, total timeout, retry under a budget,
/// breaker, bulkhead, attempt timeout.
#[derive(Clone, Debug)]
pub struct Protected {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pipeline: WithFallback<Answer, HttpError, Classifier>,
    breaker: Breaker,
    transport: Transport,
    /// The report of the first execution that gave up, before its fallback
    /// answered.
    sample: Arc<std::sync::OnceLock<String>>,
}

impl Protected {
    /// The pipeline the service calls through, fallback included: what its
    /// health judges.
    pub fn pipeline(&self) -> WithFallback<Answer, HttpError, Classifier> {
        self.inner.pipeline.clone()
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
        let pipeline = Pipeline::builder("dependency")
            .classifier(classify as Classifier)
            .total_timeout(total)
            .retry(retry)
            .breaker(breaker.clone())
            .bulkhead(bulkhead)
            .attempt_timeout(config.attempt_timeout)
            .build()
            .map_err(|e| format!("protection: {e}"))?;
        // A tier that never answers: it keeps the report of the first execution
        // that gave up, for the demo to show what its error says.
        let sample = Arc::new(std::sync::OnceLock::new());
        let keep = sample.clone();
        let fallback = Fallback::builder()
            .value(
                Trigger::when(move |result: &Result<Answer, Error<HttpError>>, _| {
                    // The first that tried more than once.
                    if let Err(e) = result {
                        if e.is_retries_exhausted() && e.history().len() > 1 {
                            keep.get_or_init(|| e.report().to_string());
                        }
                    }
                    false
                }),
                Answer::Fallback,
            )
            .named("the report keeper")
            .value(Trigger::failures(), Answer::Fallback)
            .named("static default")
            .build();
        Ok(Protected {
            inner: Arc::new(Inner {
                pipeline: pipeline.with_fallback(fallback),
                breaker,
                transport,
                sample,
            }),
        })
    }
}

fn failure(error: &Error<HttpError>) -> Failure {
    if let Some(strategy) = error.rejected_by() {
        Failure::Rejected(strategy)
    } else if error.is_timeout() || error.is_cancelled() {
        Failure::Timeout
    } else {
        Failure::Connection
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
            let result = inner
                .pipeline
                .execute(&ctx, |ctx| {
                    let transport = inner.transport.clone();
                    let attempts = attempts.clone();
                    // The attempt's context: its budget travels to the dependency.
                    async move {
                        transport
                            .get_in(&ctx, WORK_PATH, &attempts)
                            .await
                            .map(Answer::Fresh)
                    }
                })
                .await;
            match result {
                Ok(Answer::Fallback) => Served::Fallback,
                Ok(Answer::Fresh(reply)) if (200..300).contains(&reply.status()) => {
                    Served::Dependency
                }
                Ok(Answer::Fresh(reply)) => Served::Failed(Failure::Status(reply.status())),
                Err(error) => Served::Failed(failure(&error)),
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
