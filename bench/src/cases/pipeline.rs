//! The whole defence on one successful call: total timeout, retry, breaker, rate
//! limit, bulkhead and attempt timeout, composed in palisade's fixed order, next to
//! the nearest tower stack of the peers.

use std::time::Duration;

use tower::Layer as _;

use super::{Gap, is_ok, ok_call, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async};

const ALL: &str = "all strategies, successful call";
const THREE: &str = "retry + breaker + bulkhead, successful call";

pub(super) const GAPS: &[Gap] = &[Gap {
    area: "pipeline",
    workload: ALL,
    label: "seatbelt",
    why: "not measured: seatbelt has retry, breaker and timeout but no rate limit or bulkhead",
}];

fn pipeline() -> palisade::Pipeline {
    palisade::Pipeline::builder("bench")
        .total_timeout(Duration::from_secs(10))
        .retry(super::retry::palisade_retry(true).0)
        .breaker(super::breaker::palisade())
        .rate_limiter(
            palisade_limit::RateLimiter::new(palisade_limit::RateLimiterConfig::per_second(
                1_000_000_000,
            ))
            .expect("a valid rate limiter"),
        )
        .bulkhead(
            palisade_limit::Bulkhead::new(palisade_limit::BulkheadConfig::new(64))
                .expect("a valid bulkhead"),
        )
        .attempt_timeout(Duration::from_secs(1))
        .build()
        .expect("a valid pipeline")
}

/// Retry (with its budget), breaker and bulkhead: the usual client defence.
fn three() -> palisade::Pipeline {
    palisade::Pipeline::builder("bench")
        .retry(super::retry::palisade_retry(true).0)
        .breaker(super::breaker::palisade())
        .bulkhead(
            palisade_limit::Bulkhead::new(palisade_limit::BulkheadConfig::new(64))
                .expect("a valid bulkhead"),
        )
        .build()
        .expect("a valid pipeline")
}

pub(super) fn cases() -> Vec<Case> {
    let tower_stack = tower::ServiceBuilder::new()
        .timeout(Duration::from_secs(10))
        .layer(tower::retry::RetryLayer::new(
            super::retry::Attempts::three(),
        ))
        .layer(super::breaker::tower_resilience_layer())
        .concurrency_limit(64)
        .timeout(Duration::from_secs(1))
        .service(tower::service_fn(ok_service));
    vec![
        Case::new(
            "pipeline",
            THREE,
            "palisade Pipeline::execute",
            Role::Palisade,
            bench_async!(
                (three(), palisade_context::Context::background()),
                |s| s.0.execute(&s.1, |_ctx| ok_call()),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("retry with budget, breaker, bulkhead"),
        Case::new(
            "pipeline",
            THREE,
            "recloser",
            Role::Peer,
            bench_async!(super::breaker::recloser(), |s| s.call(ok_call()), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("AsyncRecloser::call alone: the breaker without retry or bulkhead"),
        Case::new(
            "pipeline",
            ALL,
            "palisade Pipeline::execute",
            Role::Palisade,
            bench_async!(
                (pipeline(), palisade_context::Context::background()),
                |s| s.0.execute(&s.1, |_ctx| ok_call()),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("total timeout, retry with budget, breaker, rate limit, bulkhead, attempt timeout"),
        Case::new(
            "pipeline",
            ALL,
            "palisade PipelineLayer (tower)",
            Role::Palisade,
            bench_async!(
                palisade::tower::PipelineLayer::new(pipeline())
                    .layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the same pipeline as a tower Service (a boxed future per call)"),
        Case::new(
            "pipeline",
            ALL,
            "tower + tower-resilience stack",
            Role::Peer,
            bench_async!(tower_stack, |s| tower_call(s), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note(
            "Timeout, Retry, tower-resilience breaker, ConcurrencyLimit, Timeout; no rate \
             limit (tower's RateLimit is not Clone, so Retry cannot wrap it without a Buffer)",
        ),
    ]
}
