//! Rate limits: one admission check of a limiter that admits (direct), and one of a
//! per-key limiter over 1024 keys in rotation (keyed).
//!
//! The limits are set so high that no check in the run is refused: the workload is
//! the cost of saying yes.

use std::num::NonZeroU32;
use std::time::Duration;

use tower::Layer as _;

use super::{Gap, is_ok, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

const DIRECT: &str = "direct check";
const KEYED: &str = "keyed check (1024 keys)";
const KEYS: u64 = 1024;

pub(super) const GAPS: &[Gap] = &[Gap {
    area: "ratelimit",
    workload: KEYED,
    label: "tower RateLimit",
    why: "tower's RateLimit is one limit per service instance; it has no keyed form",
}];

/// As high as palisade's limit allows (10^9 per second) and more: never exhausted.
fn quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::MAX)
}

fn limiter() -> palisade_limit::RateLimiter {
    palisade_limit::RateLimiter::new(palisade_limit::RateLimiterConfig::per_second(1_000_000_000))
        .expect("a valid rate limiter configuration")
}

pub(super) fn cases() -> Vec<Case> {
    let keyed = governor::RateLimiter::keyed(quota());
    for key in 0..KEYS {
        let _ = keyed.check_key(&key);
    }
    let palisade = limiter();
    let palisade_keyed =
        palisade_limit::KeyedRateLimiter::<u64>::new(palisade_limit::KeyedRateLimiterConfig::new(
            palisade_limit::RateLimiterConfig::per_second(1_000_000_000),
            10_000,
        ))
        .expect("a valid keyed rate limiter configuration");
    for key in 0..KEYS {
        let _ = palisade_keyed.check(&key);
    }
    vec![
        Case::new(
            "ratelimit",
            DIRECT,
            "palisade-limit RateLimiter",
            Role::Palisade,
            bench_sync!(palisade, |s| s.check(), is_ok),
        )
        .floor(Floor::Atomic)
        .key()
        .note("RateLimiter::check, GCRA on one atomic word, coarse clock"),
        Case::new(
            "ratelimit",
            DIRECT,
            "palisade tower::rate_limiter layer",
            Role::Palisade,
            bench_async!(
                palisade::tower::rate_limiter(limiter()).layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the facade's tower layer, as tower RateLimit; shareable (&self limiter)"),
        Case::new(
            "ratelimit",
            DIRECT,
            "governor",
            Role::Peer,
            bench_sync!(governor::RateLimiter::direct(quota()), |s| s.check(), is_ok),
        )
        .floor(Floor::Atomic)
        .key()
        .note("RateLimiter::direct(..).check(), GCRA on one atomic, quanta clock"),
        Case::new(
            "ratelimit",
            DIRECT,
            "tower RateLimit",
            Role::Peer,
            bench_async!(
                tower::limit::RateLimit::new(
                    tower::service_fn(ok_service),
                    tower::limit::rate::Rate::new(u64::MAX, Duration::from_secs(1)),
                ),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .note("a tower Service (ready + call + the awaited inner call); not shareable, &mut self"),
        Case::new(
            "ratelimit",
            KEYED,
            "palisade-limit KeyedRateLimiter",
            Role::Palisade,
            bench_sync!(
                (palisade_keyed, 0u64),
                |s| {
                    s.1 = (s.1 + 1) % KEYS;
                    s.0.check(&s.1)
                },
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("KeyedRateLimiter::check, at most 10 000 keys, keys pre-inserted"),
        Case::new(
            "ratelimit",
            KEYED,
            "governor",
            Role::Peer,
            bench_sync!(
                (keyed, 0u64),
                |s| {
                    s.1 = (s.1 + 1) % KEYS;
                    s.0.check_key(&s.1)
                },
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("RateLimiter::keyed (DashMap state store), keys pre-inserted"),
    ]
}
