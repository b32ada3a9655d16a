//! Circuit breakers: a successful call through a closed breaker, a rejection by an
//! open one, and the closed-state call on two threads sharing one breaker; and the
//! keyed registry's cost of a new key, below its bound and when it is full.
//!
//! Every breaker wraps the same protected call ([`ok_call`]) and is configured alike
//! where the crates allow it: a failure-rate or consecutive-failure trip, and an open
//! state of an hour so that the rejection workload stays open for the whole run.

use std::sync::Arc;
use std::time::Duration;

use layered::{Execute, Service as _, Stack as _};
use tower::Layer as _;

use super::{
    Boom, Gap, block_on, call_for, failing_call, is_ok, ok_call, ok_service, tower_call,
    tower_call_with,
};
use crate::harness::{Case, Floor, Role, bench_async, bench_parallel};

const CLOSED: &str = "closed-state call";
const OPEN: &str = "open-state rejection";
const TWO: &str = "closed-state call, 2 threads";

const OPEN_FOR: Duration = Duration::from_secs(3600);

const REGISTRY_BELOW: &str = "registry: new key, below the bound";
const REGISTRY_FULL: &str = "registry: new key, full";
const REGISTRY_KNOWN: &str = "registry: known key (1000 keys)";
/// The below-the-bound registry starts over empty after this many keys, far below
/// its bound (so a long timed run does not fill it).
const REGISTRY_RESTART: u64 = 1 << 16;

type Registry = palisade_breaker::Registry<u64, palisade_clock::ManualClock>;

/// A registry of small breakers (a 10-call count window) holding at most
/// `max_keys` keys, on a clock that does not move (no key ever becomes idle).
fn registry(max_keys: usize) -> Registry {
    palisade_breaker::Registry::builder(
        palisade_breaker::BreakerConfig::default()
            .window(palisade_breaker::WindowConfig::Count { size: 10 })
            .minimum_calls(10),
        palisade_breaker::RegistryConfig::default().with_max_keys(max_keys),
    )
    .clock(palisade_clock::ManualClock::new())
    .build()
    .expect("a valid registry configuration")
}

/// A registry of the default bound (1 000 keys), full.
fn full_registry() -> Registry {
    let r = registry(1_000);
    for key in 0..1_000 {
        r.get(&key);
    }
    r
}

pub(super) const GAPS: &[Gap] = &[];

// ---- palisade-breaker -------------------------------------------------------------

/// Configured like the peers: 50 % of a 100-call window, at least 10 calls, open for
/// an hour.
pub(super) fn palisade() -> palisade_breaker::Breaker {
    let config = palisade_breaker::BreakerConfig::default()
        .failure_rate_threshold(Some(50.0))
        .window(palisade_breaker::WindowConfig::Count { size: 100 })
        .minimum_calls(10)
        .open(palisade_breaker::OpenDuration::fixed(OPEN_FOR));
    palisade_breaker::Breaker::new(config).expect("a valid breaker configuration")
}

/// The default configuration: a time-based window of 10 × 1 s.
fn palisade_default() -> palisade_breaker::Breaker {
    palisade_breaker::Breaker::new(palisade_breaker::BreakerConfig::default())
        .expect("the default breaker configuration")
}

fn palisade_open() -> palisade_breaker::Breaker {
    let b = palisade();
    block_on(async {
        for _ in 0..200 {
            let _ = b.call(failing_call()).await;
        }
    });
    b
}

type PalisadeResult = Result<u64, palisade_breaker::CallError<Boom>>;

fn palisade_rejected(r: &PalisadeResult) -> bool {
    r.as_ref()
        .is_err_and(palisade_breaker::CallError::is_rejected)
}

// ---- recloser -------------------------------------------------------------------

/// recloser configured as every breaker here: 50 % over the last 100 calls, open
/// for an hour. The window area records into its synchronous form.
pub(super) fn recloser_sync() -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .half_open_len(10)
        .open_wait(OPEN_FOR)
        .build()
}

/// [`recloser_sync`] as an async breaker, the form the breaker and pipeline areas
/// call.
pub(super) fn recloser() -> recloser::AsyncRecloser {
    recloser_sync().into()
}

fn recloser_open() -> recloser::AsyncRecloser {
    let r = recloser();
    block_on(async {
        for _ in 0..200 {
            let _ = r.call(failing_call()).await;
        }
    });
    r
}

fn recloser_rejected(r: &Result<u64, recloser::Error<Boom>>) -> bool {
    matches!(r, Err(recloser::Error::Rejected))
}

// ---- failsafe --------------------------------------------------------------------

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

fn failsafe() -> Failsafe {
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            5,
            failsafe::backoff::constant(OPEN_FOR),
        ))
        .build()
}

fn failsafe_call(
    cb: &Failsafe,
) -> impl std::future::Future<Output = Result<u64, failsafe::Error<Boom>>> + '_ {
    failsafe::futures::CircuitBreaker::call(cb, ok_call())
}

fn failsafe_open() -> Failsafe {
    let cb = failsafe();
    block_on(async {
        for _ in 0..20 {
            let _ = failsafe::futures::CircuitBreaker::call(&cb, failing_call()).await;
        }
    });
    cb
}

// ---- tower-resilience-circuitbreaker --------------------------------------------

pub(super) fn tower_resilience_layer() -> tower_resilience_circuitbreaker::CircuitBreakerLayer {
    tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(10)
        .wait_duration_in_open(OPEN_FOR)
        .build()
        .expect("a valid tower-resilience configuration")
}

fn tower_resilience_open() -> impl tower::Service<
    u64,
    Response = u64,
    Error = tower_resilience_circuitbreaker::CircuitBreakerError<Boom>,
    Future: Send,
> + Clone
+ Send
+ Sync {
    let mut svc = tower_resilience_layer().layer(tower::service_fn(call_for));
    block_on(async {
        for _ in 0..200 {
            let _ = tower_call_with(&mut svc, 1).await;
        }
    });
    svc
}

// ---- seatbelt --------------------------------------------------------------------

fn seatbelt_breaker() -> impl layered::Service<u64, Out = Result<u64, Boom>> + Clone + 'static {
    let clock = tick::Clock::new_tokio();
    let context = seatbelt::ResilienceContext::new(&clock);
    (
        seatbelt::breaker::Breaker::layer("bench", &context)
            .recovery_with(|r: &Result<u64, Boom>, _| match r {
                Ok(_) => seatbelt::RecoveryInfo::never(),
                Err(_) => seatbelt::RecoveryInfo::retry(),
            })
            .rejected_input_error(|_, _| Boom)
            .failure_threshold(0.5)
            .min_throughput(10)
            .break_duration(OPEN_FOR),
        Execute::new(call_for),
    )
        .into_service()
}

fn seatbelt_open() -> impl layered::Service<u64, Out = Result<u64, Boom>> + 'static {
    let svc = seatbelt_breaker();
    block_on(async {
        for _ in 0..200 {
            let _ = svc.execute(1).await;
        }
    });
    svc
}

fn registry_cases() -> Vec<Case> {
    let closed = |s: &palisade_breaker::State| *s == palisade_breaker::State::Closed;
    vec![
        Case::new(
            "breaker",
            REGISTRY_KNOWN,
            "palisade-breaker Registry",
            Role::Palisade,
            crate::harness::bench_sync!(
                (full_registry(), 0u64),
                |s| {
                    s.1 = (s.1 + 1) % 1_000;
                    s.0.get(&s.1).state()
                },
                closed
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("Registry::get of a key it holds, 1 000 keys in rotation"),
        Case::new(
            "breaker",
            REGISTRY_BELOW,
            "palisade-breaker Registry",
            Role::Palisade,
            crate::harness::bench_sync!(
                (registry(1_000_000), 0u64),
                |s| {
                    s.1 += 1;
                    if s.1.is_multiple_of(REGISTRY_RESTART) {
                        s.0 = registry(1_000_000);
                    }
                    s.0.get(&s.1).state()
                },
                closed
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note(
            "Registry::get of a key never seen: a breaker built; starts over empty every \
             2^16 keys (not within a callgrind batch)",
        ),
        Case::new(
            "breaker",
            REGISTRY_FULL,
            "palisade-breaker Registry",
            Role::Palisade,
            crate::harness::bench_sync!(
                (full_registry(), 1u64 << 32),
                |s| {
                    s.1 += 1;
                    s.0.get(&s.1).state()
                },
                closed
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("Registry::get of a key never seen, 1 000 keys held, none idle: each evicts one"),
    ]
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases = vec![
        // Closed: one successful call.
        Case::new(
            "breaker",
            CLOSED,
            "palisade-breaker",
            Role::Palisade,
            bench_async!(palisade(), |s| s.call(ok_call()), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("Breaker::call; count window of 100, as the peers"),
        Case::new(
            "breaker",
            CLOSED,
            "palisade-breaker (default config)",
            Role::Palisade,
            bench_async!(palisade_default(), |s| s.call(ok_call()), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("Breaker::call; the default time window of 10 × 1 s"),
        Case::new(
            "breaker",
            CLOSED,
            "palisade tower::breaker layer",
            Role::Palisade,
            bench_async!(
                palisade::tower::breaker(palisade()).layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the facade's tower layer: ready (takes the permit) + call, a named future"),
        Case::new(
            "breaker",
            CLOSED,
            "palisade-breaker (try_acquire + record)",
            Role::Palisade,
            bench_async!(
                palisade(),
                |s| async {
                    let permit = s.try_acquire();
                    let result = ok_call().await;
                    if let Ok(permit) = permit {
                        permit.record(palisade_classify::Outcome::Success);
                    }
                    result
                },
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the two-step API: admit, await the call, record the outcome"),
        Case::new(
            "breaker",
            CLOSED,
            "recloser",
            Role::Peer,
            bench_async!(recloser(), |s| s.call(ok_call()), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("AsyncRecloser::call"),
        Case::new(
            "breaker",
            CLOSED,
            "failsafe",
            Role::Peer,
            bench_async!(failsafe(), |s| failsafe_call(s), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("failsafe::futures::CircuitBreaker::call"),
        Case::new(
            "breaker",
            CLOSED,
            "tower-resilience",
            Role::Peer,
            bench_async!(
                tower_resilience_layer().layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("tower-resilience-circuitbreaker as a tower Service: ready + call"),
        Case::new(
            "breaker",
            CLOSED,
            "seatbelt",
            Role::Peer,
            bench_async!(seatbelt_breaker(), |s| s.execute(0), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("seatbelt Breaker layer over Execute, tokio tick clock"),
        // Open: one rejection.
        Case::new(
            "breaker",
            OPEN,
            "palisade-breaker",
            Role::Palisade,
            bench_async!(palisade_open(), |s| s.call(ok_call()), palisade_rejected),
        )
        .floor(Floor::Await)
        .key()
        .note("Breaker::call rejected with the time until it tries again"),
        Case::new(
            "breaker",
            OPEN,
            "palisade tower::breaker layer",
            Role::Palisade,
            bench_async!(
                tower::ServiceBuilder::new()
                    .load_shed()
                    .layer(palisade::tower::breaker(palisade_open()))
                    .service(tower::service_fn(ok_service)),
                |s| tower_call(s),
                |r: &Result<u64, tower::BoxError>| r.is_err()
            ),
        )
        .floor(Floor::Await)
        .note("open: not ready, shed by tower's load_shed without calling the service"),
        Case::new(
            "breaker",
            OPEN,
            "recloser",
            Role::Peer,
            bench_async!(recloser_open(), |s| s.call(ok_call()), recloser_rejected),
        )
        .floor(Floor::Await),
        Case::new(
            "breaker",
            OPEN,
            "failsafe",
            Role::Peer,
            bench_async!(failsafe_open(), |s| failsafe_call(s), |r: &Result<
                u64,
                failsafe::Error<Boom>,
            >| matches!(
                r,
                Err(failsafe::Error::Rejected)
            )),
        )
        .floor(Floor::Await),
        Case::new(
            "breaker",
            OPEN,
            "tower-resilience",
            Role::Peer,
            bench_async!(tower_resilience_open(), |s| tower_call(s), |r: &Result<
                u64,
                tower_resilience_circuitbreaker::CircuitBreakerError<Boom>,
            >| matches!(
                r,
                Err(tower_resilience_circuitbreaker::CircuitBreakerError::OpenCircuit)
            )),
        )
        .floor(Floor::Await),
        Case::new(
            "breaker",
            OPEN,
            "seatbelt",
            Role::Peer,
            bench_async!(seatbelt_open(), |s| s.execute(0), |r: &Result<
                u64,
                Boom,
            >| *r
                == Err(Boom)),
        )
        .floor(Floor::Await)
        .note("the rejection is the configured rejected_input_error value"),
    ];

    // Two threads, one shared breaker.
    let shared = palisade();
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "palisade-breaker",
            Role::Palisade,
            bench_parallel!(2, move || shared.clone(), |s| s.call(ok_call()), is_ok),
        )
        .threads(2, CLOSED),
    );
    let shared = palisade_default();
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "palisade-breaker (default config)",
            Role::Palisade,
            bench_parallel!(2, move || shared.clone(), |s| s.call(ok_call()), is_ok),
        )
        .threads(2, CLOSED)
        .note("the default time window of 10 × 1 s, striped per thread"),
    );
    let shared = Arc::new(recloser());
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "recloser",
            Role::Peer,
            bench_parallel!(2, move || Arc::clone(&shared), |s| s.call(ok_call()), is_ok),
        )
        .threads(2, CLOSED),
    );
    let shared = failsafe();
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "failsafe",
            Role::Peer,
            bench_parallel!(2, move || shared.clone(), |s| failsafe_call(s), is_ok),
        )
        .threads(2, CLOSED),
    );
    let shared = tower_resilience_layer().layer(tower::service_fn(ok_service));
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "tower-resilience",
            Role::Peer,
            bench_parallel!(2, move || shared.clone(), |s| tower_call(s), is_ok),
        )
        .threads(2, CLOSED)
        .note("one service clone per thread, sharing the circuit"),
    );
    let shared = seatbelt_breaker();
    cases.push(
        Case::new(
            "breaker",
            TWO,
            "seatbelt",
            Role::Peer,
            bench_parallel!(2, move || shared.clone(), |s| s.execute(0), is_ok),
        )
        .threads(2, CLOSED),
    );
    cases.extend(registry_cases());
    cases
}
