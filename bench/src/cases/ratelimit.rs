//! Rate limits: one admission check of a limiter that admits (direct), and one of a
//! per-key limiter over 1024 keys in rotation (keyed).
//!
//! The limits of those two are set so high that no check in the run is refused: the
//! workload is the cost of saying yes. The keyed limiter's bound has three more
//! workloads of its own: a new key while the limiter holds fewer keys than its
//! bound, a new key when it is full (every key tracked is still being limited, so
//! each new key evicts one that has not recovered), and a flood of new keys with 1 %
//! of the checks going to a few hot keys that are being refused.

use std::num::NonZeroU32;
use std::time::Duration;

use tower::Layer as _;

use super::{Gap, is_ok, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

const DIRECT: &str = "direct check";
const KEYED: &str = "keyed check (1024 keys)";
const KEYS: u64 = 1024;
const NEW_BELOW: &str = "keyed: new key, below the bound";
const NEW_FULL: &str = "keyed: new key, full";
const FLOOD: &str = "keyed: 1 % hot keys, 99 % flood";

/// The bound of the full and flood workloads (the default bound).
const FULL_KEYS: usize = 10_000;
/// Hot keys of the flood workload; each is checked once every 1 000 checks.
const HOT: u64 = 10;
/// The below-the-bound workload starts over with an empty limiter after this many
/// keys, far below its bound (so a long timed run does not fill it).
const RESTART: u64 = 1 << 17;

pub(super) const GAPS: &[Gap] = &[
    Gap {
        area: "ratelimit",
        workload: KEYED,
        label: "tower RateLimit",
        why: "tower's RateLimit is one limit per service instance; it has no keyed form",
    },
    Gap {
        area: "ratelimit",
        workload: NEW_FULL,
        label: "governor",
        why: "governor's keyed limiter has no bound on its keys: it is never full",
    },
    Gap {
        area: "ratelimit",
        workload: FLOOD,
        label: "governor",
        why: "governor's keyed limiter has no bound on its keys: it is never full",
    },
];

type Keyed = palisade_limit::KeyedRateLimiter<u64, palisade_clock::ManualClock>;

/// One call per second per key, a burst of one, at most `max_keys` keys, on a
/// clock that does not move: a key that has passed once is limited for the whole
/// run.
fn strict_keyed(max_keys: usize) -> Keyed {
    palisade_limit::KeyedRateLimiter::with_clock(
        palisade_limit::KeyedRateLimiterConfig::new(
            palisade_limit::RateLimiterConfig::per_second(1).with_burst(1),
            max_keys,
        ),
        palisade_clock::ManualClock::new(),
    )
    .expect("a valid keyed rate limiter configuration")
}

/// A strict limiter filled to its bound: twice as many keys as the bound went
/// through it, so every shard is full, and none has recovered.
fn full_keyed() -> Keyed {
    let limiter = strict_keyed(FULL_KEYS);
    for key in 0..2 * FULL_KEYS as u64 {
        let _ = limiter.check(&key);
    }
    limiter
}

/// The flood workload's hot key for check number `i`, if it goes to one.
fn hot_key(i: u64) -> Option<u64> {
    i.is_multiple_of(100).then(|| u64::MAX - (i / 100) % HOT)
}

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
        Case::new(
            "ratelimit",
            NEW_BELOW,
            "palisade-limit KeyedRateLimiter",
            Role::Palisade,
            bench_sync!(
                (strict_keyed(1 << 20), 0u64),
                |s| {
                    s.1 += 1;
                    if s.1.is_multiple_of(RESTART) {
                        s.0 = strict_keyed(1 << 20);
                    }
                    s.0.check(&s.1)
                },
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note(
            "a key never seen, at most 2^20 keys; starts over empty every 2^17 keys \
             (not within a callgrind batch)",
        ),
        Case::new(
            "ratelimit",
            NEW_FULL,
            "palisade-limit KeyedRateLimiter",
            Role::Palisade,
            bench_sync!(
                (full_keyed(), 1u64 << 32),
                |s| {
                    s.1 += 1;
                    s.0.check(&s.1)
                },
                is_ok
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("a key never seen, 10 000 keys tracked, none recovered: each evicts one"),
        Case::new(
            "ratelimit",
            FLOOD,
            "palisade-limit KeyedRateLimiter",
            Role::Palisade,
            bench_sync!(
                {
                    let limiter = full_keyed();
                    // Each hot key passes once, then is refused: it is being limited.
                    for i in 0..HOT {
                        let _ = limiter.check(&(u64::MAX - i));
                        let _ = limiter.check(&(u64::MAX - i));
                    }
                    (limiter, 1u64 << 32)
                },
                |s| {
                    s.1 += 1;
                    // A flood key passes; a hot key is still refused.
                    match hot_key(s.1) {
                        Some(hot) => s.0.check(&hot).is_err(),
                        None => s.0.check(&s.1).is_ok(),
                    }
                },
                |kept: &bool| *kept
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note(
            "10 000 keys tracked; 1 check in 100 goes to one of 10 hot keys being refused, \
             the others are new keys; the check verifies the hot keys stay refused",
        ),
    ]
}
