//! Bulkheads: acquiring a concurrency slot and releasing it.

use tower::Layer as _;

use super::{Gap, is_ok, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

const ACQUIRE: &str = "acquire + release";

pub(super) const GAPS: &[Gap] = &[];

fn palisade() -> palisade_limit::Bulkhead {
    palisade_limit::Bulkhead::new(palisade_limit::BulkheadConfig::new(64))
        .expect("a valid bulkhead configuration")
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "bulkhead",
            ACQUIRE,
            "palisade-limit Bulkhead (acquire().await)",
            Role::Palisade,
            bench_async!(
                palisade(),
                |s| async {
                    let permit = s.acquire().await;
                    let result = super::ok_call().await;
                    drop(permit);
                    result
                },
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("acquire().await, the protected call, the permit dropped: as ConcurrencyLimit"),
        Case::new(
            "bulkhead",
            ACQUIRE,
            "palisade-limit Bulkhead (try_acquire)",
            Role::Palisade,
            bench_sync!(palisade(), |s| s.try_acquire().map(drop), is_ok),
        )
        .floor(Floor::Atomic)
        .key()
        .note("try_acquire + drop of the permit: as tokio's try_acquire"),
        Case::new(
            "bulkhead",
            ACQUIRE,
            "palisade tower::bulkhead layer",
            Role::Palisade,
            bench_async!(
                palisade::tower::bulkhead(palisade()).layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the facade's tower layer, as tower ConcurrencyLimit"),
        Case::new(
            "bulkhead",
            ACQUIRE,
            "tower ConcurrencyLimit",
            Role::Peer,
            bench_async!(
                tower::limit::ConcurrencyLimit::new(tower::service_fn(ok_service), 64),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("a tower Service: the permit is taken in poll_ready and released with the response"),
        Case::new(
            "bulkhead",
            ACQUIRE,
            "tokio Semaphore",
            Role::Reference,
            bench_sync!(
                tokio::sync::Semaphore::new(64),
                |s| s.try_acquire().map(drop),
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .note("try_acquire + drop of the permit: what ConcurrencyLimit is built on"),
    ]
}
