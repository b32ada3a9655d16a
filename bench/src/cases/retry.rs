//! Retries: a call that succeeds on its first attempt (what a healthy dependency
//! costs through the retry layer), a retry budget's deposit (what every first
//! attempt pays with a budget), and generating ten jittered delays (the schedule
//! alone).
//!
//! Every retry is configured alike where the crates allow it: exponential backoff
//! from 10 ms with jitter, at most three retries.

use std::time::Duration;

use backon::{BackoffBuilder as _, Retryable as _};
use layered::{Execute, Service as _, Stack as _};
use tower::Layer as _;
use tower::retry::backoff::{Backoff as _, ExponentialBackoffMaker, MakeBackoff as _};
use tower::retry::budget::Budget as _;

use super::{Boom, Gap, call_for, ok_call, ok_service, tower_call};
use crate::harness::{Case, Floor, Role, bench_async, bench_sync};

const FIRST: &str = "success on the first attempt";
const DELAYS: &str = "10 jittered delays";
const DEPOSIT: &str = "budget deposit";

pub(super) const GAPS: &[Gap] = &[Gap {
    area: "retry",
    workload: DELAYS,
    label: "seatbelt",
    why: "seatbelt computes its delays inside the Retry middleware; the schedule is not public API",
}];

fn is_ok<T, E>(r: &Result<T, E>) -> bool {
    r.is_ok()
}

/// Exponential from 10 ms with full jitter, at most three retries (four attempts).
fn palisade_backoff(max_attempts: u32) -> palisade_backoff::Backoff {
    palisade_backoff::Backoff::exponential(Duration::from_millis(10))
        .jitter(palisade_backoff::Jitter::Full)
        .max_attempts(max_attempts)
        .build()
        .expect("a valid backoff")
}

pub(super) fn palisade_retry(
    budget: bool,
) -> (palisade_retry::RetryPolicy, palisade_context::Context) {
    let mut builder = palisade_retry::RetryPolicy::builder().backoff(palisade_backoff(4));
    if budget {
        builder = builder.budget(palisade_retry::RetryBudget::new());
    }
    let policy = builder.build().expect("a valid retry policy");
    (policy, palisade_context::Context::background())
}

fn backon_builder() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(10))
        .with_jitter()
        .with_max_times(3)
}

type TokioRetryStrategy = std::iter::Take<
    std::iter::Map<tokio_retry::strategy::ExponentialBackoff, fn(Duration) -> Duration>,
>;

fn tokio_retry_strategy(times: usize) -> TokioRetryStrategy {
    // tokio-retry's exponential backoff is factor * base^n: 10 ms, 20 ms, 40 ms, ...
    tokio_retry::strategy::ExponentialBackoff::from_millis(2)
        .factor(5)
        .map(tokio_retry::strategy::jitter as fn(Duration) -> Duration)
        .take(times)
}

fn tower_backoff() -> ExponentialBackoffMaker {
    ExponentialBackoffMaker::new(
        Duration::from_millis(10),
        Duration::from_secs(10),
        1.0,
        tower::util::rng::HasherRng::default(),
    )
    .expect("a valid tower backoff")
}

/// A tower retry policy: up to `left` retries of failed calls with exponential backoff.
#[derive(Clone, Debug)]
pub(super) struct Attempts {
    left: u32,
    backoff: tower::retry::backoff::ExponentialBackoff,
}

impl Attempts {
    /// Three retries, exponential backoff from 10 ms with jitter.
    pub(super) fn three() -> Attempts {
        Attempts {
            left: 3,
            backoff: tower_backoff().make_backoff(),
        }
    }
}

impl<E> tower::retry::Policy<u64, u64, E> for Attempts {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut u64, result: &mut Result<u64, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.left > 0 => {
                self.left -= 1;
                Some(self.backoff.next_backoff())
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

fn seatbelt_retry() -> impl layered::Service<u64, Out = Result<u64, Boom>> + 'static {
    let clock = tick::Clock::new_tokio();
    let context = seatbelt::ResilienceContext::new(&clock);
    (
        seatbelt::retry::Retry::layer("bench", &context)
            .clone_input()
            .recovery_with(|r: &Result<u64, Boom>, _| match r {
                Ok(_) => seatbelt::RecoveryInfo::never(),
                Err(_) => seatbelt::RecoveryInfo::retry(),
            })
            .base_delay(Duration::from_millis(10))
            .use_jitter(true)
            .max_retry_attempts(3),
        Execute::new(call_for),
    )
        .into_service()
}

pub(super) fn cases() -> Vec<Case> {
    let tower_svc = tower::retry::Retry::new(Attempts::three(), tower::service_fn(ok_service));
    vec![
        Case::new(
            "retry",
            FIRST,
            "palisade-retry",
            Role::Palisade,
            bench_async!(
                palisade_retry(false),
                |s| s.0.retry(&s.1, |_attempt| ok_call()),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("RetryPolicy::retry under the background context, no budget"),
        Case::new(
            "retry",
            FIRST,
            "palisade-retry (with budget)",
            Role::Palisade,
            bench_async!(
                palisade_retry(true),
                |s| s.0.retry(&s.1, |_attempt| ok_call()),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("as above, with the default retry budget (a success deposits)"),
        Case::new(
            "retry",
            FIRST,
            "palisade tower::retry layer",
            Role::Palisade,
            bench_async!(
                palisade::tower::retry(palisade_retry(false).0)
                    .layer(tower::service_fn(ok_service)),
                |s| tower_call(s),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("the facade's tower layer, as tower Retry"),
        Case::new(
            "retry",
            FIRST,
            "backon",
            Role::Peer,
            bench_async!(backon_builder(), |s| ok_call.retry(*s), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("Retryable::retry with ExponentialBuilder (jitter, 3 times)"),
        Case::new(
            "retry",
            FIRST,
            "tokio-retry",
            Role::Peer,
            bench_async!(
                tokio_retry_strategy(3),
                |s| tokio_retry::Retry::start(s.clone(), ok_call),
                is_ok
            ),
        )
        .floor(Floor::Await)
        .key()
        .note("Retry::start with ExponentialBackoff.map(jitter).take(3)"),
        Case::new(
            "retry",
            FIRST,
            "tower Retry",
            Role::Peer,
            bench_async!(tower_svc, |s| tower_call(s), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("tower::retry::Retry with an attempts + ExponentialBackoff policy"),
        Case::new(
            "retry",
            FIRST,
            "seatbelt",
            Role::Peer,
            bench_async!(seatbelt_retry(), |s| s.execute(0), is_ok),
        )
        .floor(Floor::Await)
        .key()
        .note("seatbelt Retry layer over Execute (clone_input)"),
        Case::new(
            "retry",
            DEPOSIT,
            "palisade-retry",
            Role::Palisade,
            bench_sync!(
                palisade_retry::RetryBudget::new(),
                |s| {
                    s.deposit();
                    &*s
                },
                |b: &&palisade_retry::RetryBudget| b.snapshot().deposits() > 0
            ),
        )
        .floor(Floor::Atomic)
        .key()
        .note("RetryBudget::deposit with the defaults: a relaxed add on this thread's stripe"),
        Case::new(
            "retry",
            DEPOSIT,
            "tower TpsBudget",
            Role::Peer,
            bench_sync!(
                // No reserve, so that a withdrawal needs the deposits.
                tower::retry::budget::TpsBudget::new(Duration::from_secs(10), 0, 1.0),
                |s| {
                    s.deposit();
                    &*s
                },
                |b: &&tower::retry::budget::TpsBudget| b.withdraw()
            ),
        )
        .floor(Floor::Atomic)
        .note("TpsBudget::deposit (10 s window, no reserve): a mutex and a clock read"),
        Case::new(
            "retry",
            DELAYS,
            "palisade-backoff",
            Role::Palisade,
            bench_sync!(
                palisade_backoff(11),
                |s| s.iter().fold(Duration::ZERO, |a, d| a + d),
                |d: &Duration| *d > Duration::ZERO
            ),
        )
        .key()
        .note("Backoff::iter(), 10 delays, full jitter from a per-thread generator"),
        Case::new(
            "retry",
            DELAYS,
            "backon",
            Role::Peer,
            bench_sync!(
                backon_builder().with_max_times(10),
                |s| s.build().fold(Duration::ZERO, |a, d| a + d),
                |d: &Duration| *d > Duration::ZERO
            ),
        )
        .note("ExponentialBuilder::build(), 10 items, jitter from fastrand"),
        Case::new(
            "retry",
            DELAYS,
            "tokio-retry",
            Role::Peer,
            bench_sync!(
                (),
                |_s| tokio_retry_strategy(10).sum::<Duration>(),
                |d: &Duration| *d > Duration::ZERO
            ),
        )
        .note("ExponentialBackoff.map(jitter).take(10); jitter from rand's thread_rng"),
        Case::new(
            "retry",
            DELAYS,
            "tower backoff",
            Role::Peer,
            bench_sync!(
                tower_backoff(),
                |s| {
                    let mut backoff = s.make_backoff();
                    let mut last = None;
                    for _ in 0..10 {
                        last = Some(backoff.next_backoff());
                    }
                    last.map(|sleep| sleep.deadline())
                },
                |d: &Option<tokio::time::Instant>| d
                    .is_some_and(|d| d > tokio::time::Instant::now())
            ),
        )
        .note("ExponentialBackoff::next_backoff returns a tokio Sleep (created, never polled)"),
    ]
}
