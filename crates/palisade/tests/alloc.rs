//! A successful call through a pipeline allocates nothing, and neither does
//! the context the inbound edge makes of a request's headers.
//!
//! A counting global allocator counts the allocations made on this thread while a
//! flag is up; the pipeline runs on a current-thread runtime on the same thread.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "retry", feature = "breaker", feature = "limit"))]

use std::time::Duration;

use palisade::breaker::{Breaker, BreakerConfig};
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::{Context, Pipeline};

mod support {
    pub(crate) mod counting;
}

use std::sync::atomic::Ordering;

use support::counting::{ALLOCATIONS, COUNTING, Counting, allocations_during};

#[global_allocator]
static GLOBAL: Counting = Counting;

async fn calls(pipeline: &Pipeline, ctx: &Context, n: u32) {
    for i in 0..n {
        let v = pipeline
            .execute(ctx, |_ctx| async move { Ok::<u32, std::io::Error>(i) })
            .await
            .unwrap();
        assert_eq!(v, i);
    }
}

/// Allocations made by 1000 successful calls through `pipeline`, after a warm-up:
/// the fewest of three rounds, so that a one-time lazy initialisation in the
/// process (the runtime's, the clock's) does not count, while anything allocated
/// per call shows as at least 1000 in every round. Only the calls are counted:
/// `block_on` itself may allocate.
fn allocations_per_1000_calls(pipeline: &Pipeline) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let ctx = Context::background();
    rt.block_on(async {
        calls(pipeline, &ctx, 100).await;
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
            calls(pipeline, &ctx, 1000).await;
            COUNTING.with(|c| c.set(false));
            fewest = fewest.min(ALLOCATIONS.load(Ordering::Relaxed) - before);
        }
        fewest
    })
}

#[test]
fn a_successful_call_allocates_nothing() {
    let timeouts = Pipeline::builder("dep")
        .attempt_timeout(Duration::from_millis(100))
        .total_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(allocations_per_1000_calls(&timeouts), 0);

    let everything = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(1))
        .retry(
            RetryPolicy::builder()
                .budget(RetryBudget::new())
                .build()
                .unwrap(),
        )
        .breaker(Breaker::new(BreakerConfig::default()).unwrap())
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1_000_000)).unwrap())
        .bulkhead(Bulkhead::new(BulkheadConfig::new(100)).unwrap())
        .attempt_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_eq!(allocations_per_1000_calls(&everything), 0);
}

/// The pipeline of all strategies, under a request's context (a deadline, a
/// trace context and a request id, as the inbound edge makes it): each
/// attempt's context, read by the call, allocates nothing either.
#[test]
fn an_attempt_context_under_a_request_context_allocates_nothing() {
    use palisade::context::trace::{RequestId, TraceContext, TraceFlags};

    let pipeline = Pipeline::builder("dep")
        .total_timeout(Duration::from_secs(10))
        .retry(
            RetryPolicy::builder()
                .budget(RetryBudget::new())
                .build()
                .unwrap(),
        )
        .breaker(Breaker::new(BreakerConfig::default()).unwrap())
        .rate_limiter(RateLimiter::new(RateLimiterConfig::per_second(1_000_000)).unwrap())
        .bulkhead(Bulkhead::new(BulkheadConfig::new(100)).unwrap())
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let fewest = rt.block_on(async {
        let (request, _guard) = Context::background()
            .with_values((
                TraceContext::new_root(TraceFlags::SAMPLED),
                RequestId::parse("req-1").unwrap(),
            ))
            .with_timeout(Duration::from_secs(60));
        let calls = |n: u32| {
            let pipeline = &pipeline;
            let request = &request;
            async move {
                for _ in 0..n {
                    pipeline
                        .execute(request, |ctx| async move {
                            // The attempt's budget and the request's values.
                            let remaining = ctx.remaining().unwrap();
                            assert!(remaining <= Duration::from_secs(5));
                            assert!(TraceContext::from_context(&ctx).is_some());
                            assert_eq!(RequestId::from_context(&ctx).unwrap().as_str(), "req-1");
                            Ok::<_, std::io::Error>(remaining)
                        })
                        .await
                        .unwrap();
                }
            }
        };
        calls(100).await;
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
            calls(1000).await;
            COUNTING.with(|c| c.set(false));
            fewest = fewest.min(ALLOCATIONS.load(Ordering::Relaxed) - before);
        }
        fewest
    });
    assert_eq!(fewest, 0);
}

/// The inbound edge makes a request's context (its deadline, trace context
/// and request id read from the headers) without allocating, once the thread
/// has made and dropped one: the node and the values' link are reused, and a
/// request id of up to 38 characters is held in place.
#[cfg(all(feature = "http", feature = "tower"))]
#[test]
fn an_inbound_context_allocates_nothing() {
    use palisade::edge::Inbound;

    let inbound = Inbound::new();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-request-timeout-ms", "1500".parse().unwrap());
    headers.insert(
        "x-request-id",
        "0b9d7f2e-6c1a-4f3e-9a57-3c2e8d41b6a0".parse().unwrap(),
    );
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let request = || {
        let (ctx, guard) = inbound.context(&headers).unwrap();
        assert!(ctx.deadline().is_some());
        drop(ctx);
        drop(guard);
    };
    request();
    let fewest = (0..3)
        .map(|_| allocations_during(|| (0..1000).for_each(|_| request())))
        .min()
        .unwrap();
    assert_eq!(fewest, 0);
}

#[test]
fn the_counter_sees_allocations() {
    // The twin that proves the allocator counts: a boxed value is one allocation.
    let n = allocations_during(|| {
        std::hint::black_box(Box::new(5u64));
    });
    assert_eq!(n, 1);
}
