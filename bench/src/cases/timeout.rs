//! Timeouts around a future that is ready at once: the cost of arming and disarming
//! the deadline when the call is fast.

use std::time::Duration;

use tower::Layer as _;

use super::{Gap, ok_call, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async};

const READY: &str = "ready future";
const LIMIT: Duration = Duration::from_secs(1);

pub(super) const GAPS: &[Gap] = &[];

fn is_ok<T, E>(r: &Result<T, E>) -> bool {
    r.is_ok()
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "timeout",
            READY,
            "palisade-context timeout",
            Role::Palisade,
            bench_async!(
                palisade_context::Context::background(),
                |s| palisade_context::timeout(s, LIMIT, ok_call()),
                |r: &Result<Result<u64, super::Boom>, palisade_context::TimeoutError>| matches!(
                    r,
                    Ok(Ok(1))
                )
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("timeout(&ctx, 1 s, call) under the background context"),
        Case::new(
            "timeout",
            READY,
            "palisade tower::attempt_timeout layer",
            Role::Palisade,
            bench_async!(
                palisade::tower::attempt_timeout(LIMIT)
                    .expect("a valid timeout")
                    .layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the facade's tower layer, as tower Timeout"),
        Case::new(
            "timeout",
            READY,
            "tokio::time::timeout",
            Role::Peer,
            bench_async!(
                (),
                |_s| tokio::time::timeout(LIMIT, ok_call()),
                |r: &Result<Result<u64, super::Boom>, tokio::time::error::Elapsed>| matches!(
                    r,
                    Ok(Ok(1))
                )
            ),
        )
        .floor(Floor::Await)
        .key(),
        Case::new(
            "timeout",
            READY,
            "tower Timeout",
            Role::Peer,
            bench_async!(
                tower::timeout::Timeout::new(tower::service_fn(ok_service), LIMIT),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("a tower Service: ready + call; the response future holds a tokio Sleep"),
    ]
}
