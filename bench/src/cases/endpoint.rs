//! Endpoints: choosing one of several healthy endpoints for a call, and request
//! coalescing for a key nobody else is asking for.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_clock::ManualClock;
use palisade_context::Context;
use palisade_endpoint::{Balance, Coalesce, OutlierConfig, Outliers};
use parking_lot::Mutex;

use super::{Boom, Gap, is_ok, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

const BALANCE: &str = "balanced call (5 healthy endpoints)";
const COALESCE: &str = "coalesced call (unique key)";

pub(super) const GAPS: &[Gap] = &[];

fn endpoints() -> impl Iterator<
    Item = (
        usize,
        impl tower::Service<u64, Response = u64, Error = Boom> + Clone,
    ),
> {
    (0..5).map(|i| (i, tower::service_fn(ok_service)))
}

pub(super) fn cases() -> Vec<Case> {
    let outliers = || {
        Outliers::builder(OutlierConfig::default())
            .clock(ManualClock::new())
            .build()
            .expect("a valid outlier configuration")
    };
    let next = AtomicU64::new(0);
    let map_next = AtomicU64::new(0);
    vec![
        Case::new(
            "endpoint",
            BALANCE,
            "palisade-endpoint Balance (p2c on in-flight, outlier detection)",
            Role::Palisade,
            bench_async!(
                Balance::builder(outliers()).seed(1).endpoints(endpoints()),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("poll_ready, a choice of two among five, the endpoint's readiness and call, the outcome recorded in its window"),
        Case::new(
            "endpoint",
            BALANCE,
            "tower p2c Balance (pending requests)",
            Role::Peer,
            bench_async!(
                tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(
                    endpoints().map(|(_, s)| {
                        tower::load::PendingRequests::new(s, tower::load::CompleteOnResponse::default())
                    })
                )),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("tower's balance over a ServiceList; no outlier detection"),
        Case::new(
            "endpoint",
            BALANCE,
            "bare service call",
            Role::Reference,
            bench_async!(tower::service_fn(ok_service), |s| tower_call(s), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("one endpoint, no choice"),
        Case::new(
            "endpoint",
            COALESCE,
            "palisade-endpoint Coalesce::call",
            Role::Palisade,
            bench_async!(
                (Coalesce::<u64, u64, Boom>::new(), Context::background()),
                |s| {
                    let key = next.fetch_add(1, Ordering::Relaxed);
                    s.0.call(&s.1, key, |_| super::ok_call())
                },
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("a new flight: the key inserted, the call run, its result returned, the key removed"),
        Case::new(
            "endpoint",
            COALESCE,
            "Mutex<HashMap> insert + remove",
            Role::Reference,
            bench_sync!(Mutex::new(HashMap::<u64, u64>::new()), |s| {
                let key = map_next.fetch_add(1, Ordering::Relaxed);
                s.lock().insert(key, 1);
                s.lock().remove(&key).ok_or(Boom)
            }, is_ok),
        )
        .floor(Floor::Atomic)
        .key()
        .note("the keyed map a coalescer cannot do without: the target is at most 1.5× of it"),
    ]
}
