//! A successful call through each single-strategy tower layer, and through a
//! stack of them, allocates nothing.
//!
//! A counting global allocator counts the allocations made on this thread while a
//! flag is up; the pipeline runs on a current-thread runtime on the same thread.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(
    feature = "tower",
    feature = "retry",
    feature = "breaker",
    feature = "limit"
))]

use std::time::Duration;

use palisade::breaker::{Breaker, BreakerConfig};
use palisade::limit::{Bulkhead, BulkheadConfig, RateLimiter, RateLimiterConfig};
use palisade::retry::{RetryBudget, RetryPolicy};
use palisade::tower::{attempt_timeout, breaker, bulkhead, rate_limiter, retry};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

mod support {
    pub(crate) mod counting;
}

use std::sync::atomic::Ordering;

use support::counting::{ALLOCATIONS, COUNTING, Counting, allocations_during};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by 1000 successful ready + call rounds through `svc`, after
/// a warm-up: the fewest of three rounds (see alloc.rs). Only the calls count.
fn allocations_per_1000_calls<S>(mut svc: S) -> usize
where
    S: Service<u32, Response = u32>,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let round = async |svc: &mut S, n: u32| {
            for i in 0..n {
                let v = svc.ready().await.unwrap().call(i).await.unwrap();
                assert_eq!(v, i);
            }
        };
        round(&mut svc, 100).await;
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
            round(&mut svc, 1000).await;
            COUNTING.with(|c| c.set(false));
            fewest = fewest.min(ALLOCATIONS.load(Ordering::Relaxed) - before);
        }
        fewest
    })
}

fn echo()
-> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    service_fn(|i: u32| async move { Ok::<u32, std::io::Error>(i) })
}

#[test]
fn a_successful_call_through_each_layer_allocates_nothing() {
    use tower::Layer;
    let policy = || {
        RetryPolicy::builder()
            .budget(RetryBudget::new())
            .build()
            .unwrap()
    };
    let b = || Breaker::new(BreakerConfig::default()).unwrap();
    let limiter = || RateLimiter::new(RateLimiterConfig::per_second(1_000_000_000)).unwrap();
    let slots = || Bulkhead::new(BulkheadConfig::new(100)).unwrap();
    let timeout = || attempt_timeout(Duration::from_millis(100)).unwrap();

    assert_eq!(
        allocations_per_1000_calls(retry(policy()).layer(echo())),
        0,
        "retry"
    );
    assert_eq!(
        allocations_per_1000_calls(breaker(b()).layer(echo())),
        0,
        "breaker"
    );
    assert_eq!(
        allocations_per_1000_calls(rate_limiter(limiter()).layer(echo())),
        0,
        "rate limiter"
    );
    assert_eq!(
        allocations_per_1000_calls(bulkhead(slots()).layer(echo())),
        0,
        "bulkhead"
    );
    assert_eq!(
        allocations_per_1000_calls(timeout().layer(echo())),
        0,
        "attempt timeout"
    );

    let stack = ServiceBuilder::new()
        .layer(retry(policy()))
        .layer(breaker(b()))
        .layer(rate_limiter(limiter()))
        .layer(bulkhead(slots()))
        .layer(timeout())
        .service(echo());
    assert_eq!(allocations_per_1000_calls(stack), 0, "the stack");
}

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_during(|| {
        std::hint::black_box(Box::new(5u64));
    });
    assert_eq!(n, 1);
}
