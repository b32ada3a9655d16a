//! The case registry: one module per area, each listing palisade's rows, the peers'
//! rows for the same workload, and the cells a peer cannot fill.

use std::fmt;
use std::future::Future;
use std::hint::black_box;

use crate::harness::{Case, with_runtime};

mod breaker;
mod bulkhead;
mod clock;
mod context;
mod edge;
mod endpoint;
mod floors;
mod pipeline;
mod ratelimit;
pub(crate) mod redis;
mod retry;
mod timeout;
mod window;

/// The areas, in report order.
pub(crate) const AREAS: &[&str] = &[
    "floors",
    "clock",
    "breaker",
    "retry",
    "ratelimit",
    "bulkhead",
    "context",
    "edge",
    "timeout",
    "pipeline",
    "window",
    "redis",
    "endpoint",
];

/// A cell a peer cannot fill, and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gap {
    /// The area of the workload.
    pub(crate) area: &'static str,
    /// The workload.
    pub(crate) workload: &'static str,
    /// The peer.
    pub(crate) label: &'static str,
    /// Why the cell is empty.
    pub(crate) why: &'static str,
}

/// Every case of the areas `select` accepts (floors are always included: every
/// ratio needs them).
pub(crate) fn cases(select: impl Fn(&str) -> bool) -> Vec<Case> {
    let mut all = Vec::new();
    for &area in AREAS {
        if area != "floors" && !select(area) {
            continue;
        }
        // Some constructors (timers, tokio-backed clocks) need a runtime context.
        let cases = crate::harness::in_runtime(|| match area {
            "floors" => floors::cases(),
            "clock" => clock::cases(),
            "breaker" => breaker::cases(),
            "retry" => retry::cases(),
            "ratelimit" => ratelimit::cases(),
            "bulkhead" => bulkhead::cases(),
            "context" => context::cases(),
            "edge" => edge::cases(),
            "timeout" => timeout::cases(),
            "pipeline" => pipeline::cases(),
            "window" => window::cases(),
            "redis" => redis::cases(),
            "endpoint" => endpoint::cases(),
            _ => Vec::new(),
        });
        all.extend(cases);
    }
    all
}

/// Every empty cell of the areas `select` accepts.
pub(crate) fn gaps(select: impl Fn(&str) -> bool) -> Vec<Gap> {
    [
        breaker::GAPS,
        retry::GAPS,
        ratelimit::GAPS,
        bulkhead::GAPS,
        context::GAPS,
        edge::GAPS,
        timeout::GAPS,
        pipeline::GAPS,
        window::GAPS,
        endpoint::GAPS,
    ]
    .concat()
    .into_iter()
    .filter(|g| select(g.area))
    .collect()
}

/// The error of the benchmarked calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Boom;

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

palisade::impl_into_layer_error!(Boom);

/// The check of a workload whose call should succeed.
pub(crate) fn is_ok<T, E>(r: &Result<T, E>) -> bool {
    r.is_ok()
}

/// The protected call of every async workload: ready at once with `Ok(1)`.
#[inline(never)]
pub(crate) async fn ok_call() -> Result<u64, Boom> {
    Ok(black_box(1))
}

/// A protected call that fails at once.
#[inline(never)]
pub(crate) async fn failing_call() -> Result<u64, Boom> {
    Err(black_box(Boom))
}

/// The protected call as a service body: `service_fn(ok_service)`.
pub(crate) fn ok_service(_req: u64) -> impl Future<Output = Result<u64, Boom>> + Send {
    ok_call()
}

/// One call through a tower service: `ready().await` then `call(0).await`.
pub(crate) async fn tower_call<S>(svc: &mut S) -> Result<S::Response, S::Error>
where
    S: tower::Service<u64>,
{
    tower_call_with(svc, 0).await
}

/// One call of `req` through a tower service.
pub(crate) async fn tower_call_with<S>(svc: &mut S, req: u64) -> Result<S::Response, S::Error>
where
    S: tower::Service<u64>,
{
    use tower::ServiceExt;
    svc.ready().await?;
    svc.call(req).await
}

/// The protected call behind a request: `1` fails, anything else succeeds (so one
/// breaker can be tripped with failing requests and then measured with good ones).
pub(crate) async fn call_for(req: u64) -> Result<u64, Boom> {
    if req == 1 {
        failing_call().await
    } else {
        ok_call().await
    }
}

/// Runs a future to completion on this thread's runtime (for setup: tripping a
/// breaker, ...).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    with_runtime(|rt| rt.block_on(future))
}
