//! Testing code that uses palisade: nothing left behind at the end of a test.
//!
//! Everything of the [`palisade-test`](palisade_test) crate — no task left alive
//! ([`assert_no_live_tasks`], [`TaskBaseline`]), a future dropped at each of its
//! await points ([`drop_at_every_poll`]), named gauges that must be back to zero
//! ([`LeakCheck`]) — and the gauges of palisade's own primitives, added to a
//! [`LeakCheck`] by [`LeakCheckExt::watch`]:
//!
//! | watched | gauges (each must read 0) |
//! | --- | --- |
//! | [`Pipeline`], `NamedPipeline` (feature `config`; follows reloads) | those of its bulkhead, breaker and retry budget |
//! | `Bulkhead` | permits in use; callers waiting in its queue |
//! | `AdaptiveLimiter` | calls in flight |
//! | `Breaker` | half-open probes in flight (each holds a probe slot) |
//! | `RetryBudget`, `RetryPolicy` | retries taken beyond what the budget allows |
//! | [`Context`] | children, waiters and callbacks registered with it ([`Context::registrations`]) |
//! | `Compensator` | compensation tasks running |
//!
//! # Example
//!
//! A test of code that calls a dependency through a pipeline: every call is
//! dropped at each of its await points, and after each drop the bulkhead's
//! permits, the breaker's probe slots and the contexts are all released; at the
//! end no task is alive.
//!
#![cfg_attr(all(feature = "limit", feature = "breaker"), doc = "```")]
#![cfg_attr(not(all(feature = "limit", feature = "breaker")), doc = "```ignore")]
//! use palisade::breaker::{Breaker, BreakerConfig};
//! use palisade::limit::{Bulkhead, BulkheadConfig};
//! use palisade::testing::{LeakCheck, LeakCheckExt, assert_no_live_tasks, drop_at_every_poll};
//! use palisade::{Context, Pipeline};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::builder("users-api")
//!     .attempt_timeout(Duration::from_millis(300))
//!     .breaker(Breaker::new(BreakerConfig::default())?)
//!     .bulkhead(Bulkhead::new(BulkheadConfig::new(4))?)
//!     .build()?;
//! let (root, _guard) = Context::background().with_cancel();
//! let leaks = LeakCheck::new()
//!     .watch("users-api", &pipeline)
//!     .watch("root", &root);
//!
//! let done = drop_at_every_poll(
//!     || {
//!         pipeline.execute(&root, |_ctx| async {
//!             tokio::time::sleep(Duration::from_millis(20)).await;
//!             Ok::<_, std::io::Error>(200)
//!         })
//!     },
//!     || leaks.check(),
//! )
//! .await;
//! assert_eq!(done.output?, 200);
//!
//! leaks.assert_released().await;
//! assert_no_live_tasks().await;
//! # Ok(())
//! # }
//! ```

#[doc(inline)]
pub use palisade_test::*;

use palisade_context::Context;

use crate::Pipeline;

/// Something with gauges of what it holds: palisade's primitives. Add it to a
/// [`LeakCheck`] with [`LeakCheckExt::watch`].
///
/// Sealed: palisade implements it for its own types; anything else joins a
/// [`LeakCheck`] through [`LeakCheck::gauge`].
pub trait Watch: sealed::Sealed {
    /// `check` with this value's gauges added, each named `"{name}: {gauge}"`.
    /// The gauges keep a clone of the value (a shared handle), so they read its
    /// state at each check.
    fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck;
}

/// Adds the gauges of palisade's primitives to a [`LeakCheck`].
pub trait LeakCheckExt: sealed::SealedCheck {
    /// The check with the gauges of `what` added, named after `name`; see
    /// [`Watch`] and the [module docs](self) for which gauges each primitive has.
    fn watch(self, name: &str, what: &(impl Watch + ?Sized)) -> LeakCheck;
}

impl LeakCheckExt for LeakCheck {
    fn watch(self, name: &str, what: &(impl Watch + ?Sized)) -> LeakCheck {
        what.gauges(name, self)
    }
}

mod sealed {
    pub trait Sealed {}
    pub trait SealedCheck {}
    impl SealedCheck for super::LeakCheck {}
}

impl sealed::Sealed for Context {}

impl Watch for Context {
    fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
        let ctx = self.clone();
        check.gauge(format!("{name}: context registrations"), move || {
            ctx.registrations() as u64
        })
    }
}

impl<K: Send + Sync + 'static, C: palisade_clock::Clock> sealed::Sealed for Pipeline<K, C> {}

impl<K: Send + Sync + 'static, C: palisade_clock::Clock> Watch for Pipeline<K, C> {
    // Without a strategy feature, a pipeline has nothing to watch.
    #[allow(unused_variables)]
    fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
        #[allow(unused_mut)]
        let mut check = check;
        #[cfg(feature = "limit")]
        if let Some(bulkhead) = self.bulkhead() {
            check = bulkhead.gauges(name, check);
        }
        #[cfg(feature = "breaker")]
        if let Some(breaker) = self.breaker() {
            check = breaker.gauges(name, check);
        }
        #[cfg(feature = "retry")]
        if let Some(policy) = self.retry_policy() {
            check = policy.gauges(name, check);
        }
        check
    }
}

#[cfg(feature = "config")]
impl<K: Send + Sync + 'static> sealed::Sealed for crate::config::NamedPipeline<K> {}

#[cfg(feature = "config")]
impl<K: Send + Sync + 'static> Watch for crate::config::NamedPipeline<K> {
    fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
        let named = self.clone();
        // Read through the handle at each check, so that a reload's new
        // strategies are the ones watched.
        let check = check.gauge(format!("{name}: bulkhead permits in use"), {
            let named = named.clone();
            move || {
                let s = named.snapshot();
                s.bulkhead.map_or(0, |b| u64::from(b.in_flight))
            }
        });
        let check = check.gauge(format!("{name}: bulkhead waiters"), {
            let named = named.clone();
            move || {
                let s = named.snapshot();
                s.bulkhead.map_or(0, |b| u64::from(b.waiting))
            }
        });
        let check = check.gauge(format!("{name}: breaker probes in flight"), {
            let named = named.clone();
            move || {
                let s = named.snapshot();
                s.breaker.map_or(0, |b| u64::from(b.probes_in_flight))
            }
        });
        check.gauge(format!("{name}: retries beyond the budget"), move || {
            let s = named.snapshot();
            s.retry.and_then(|r| r.budget).map_or(0, |b| overdrawn(&b))
        })
    }
}

#[cfg(feature = "limit")]
mod limit {
    use super::*;
    use palisade_limit::{AdaptiveLimiter, Bulkhead};

    impl<C: palisade_clock::Clock> sealed::Sealed for Bulkhead<C> {}

    impl<C: palisade_clock::Clock> Watch for Bulkhead<C> {
        fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
            let in_use = self.clone();
            let waiting = self.clone();
            check
                .gauge(format!("{name}: bulkhead permits in use"), move || {
                    u64::from(in_use.snapshot().in_flight)
                })
                .gauge(format!("{name}: bulkhead waiters"), move || {
                    u64::from(waiting.snapshot().waiting)
                })
        }
    }

    impl<C: palisade_clock::Clock> sealed::Sealed for AdaptiveLimiter<C> {}

    impl<C: palisade_clock::Clock> Watch for AdaptiveLimiter<C> {
        fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
            let limiter = self.clone();
            check.gauge(
                format!("{name}: adaptive limit calls in flight"),
                move || u64::from(limiter.snapshot().in_flight),
            )
        }
    }
}

#[cfg(feature = "breaker")]
mod breaker {
    use super::*;
    use palisade_breaker::Breaker;

    impl<C: palisade_clock::Clock> sealed::Sealed for Breaker<C> {}

    impl<C: palisade_clock::Clock> Watch for Breaker<C> {
        fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
            let breaker = self.clone();
            check.gauge(format!("{name}: breaker probes in flight"), move || {
                u64::from(breaker.snapshot().probes_in_flight)
            })
        }
    }
}

/// Retries taken beyond what the budget allowed: its floor over the window, and
/// its ratio of the window's first attempts.
#[cfg(feature = "retry")]
fn overdrawn(b: &palisade_retry::BudgetSnapshot) -> u64 {
    let allowed = f64::from(b.min_retries_per_sec()) * b.window().as_secs_f64()
        + b.retry_ratio() * b.deposits() as f64;
    b.withdrawals().saturating_sub(allowed.floor() as u64)
}

#[cfg(feature = "retry")]
mod retry {
    use super::*;
    use palisade_retry::{RetryBudget, RetryPolicy};

    impl<C: palisade_clock::Clock> sealed::Sealed for RetryBudget<C> {}

    impl<C: palisade_clock::Clock> Watch for RetryBudget<C> {
        fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
            let budget = self.clone();
            check.gauge(format!("{name}: retries beyond the budget"), move || {
                overdrawn(&budget.snapshot())
            })
        }
    }

    impl<C: palisade_clock::Clock> sealed::Sealed for RetryPolicy<C> {}

    impl<C: palisade_clock::Clock> Watch for RetryPolicy<C> {
        fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
            match self.budget() {
                Some(budget) => budget.gauges(name, check),
                None => check,
            }
        }
    }
}

impl sealed::Sealed for palisade_fallback::Compensator {}

impl Watch for palisade_fallback::Compensator {
    fn gauges(&self, name: &str, check: LeakCheck) -> LeakCheck {
        let compensator = self.clone();
        check.gauge(format!("{name}: compensation tasks running"), move || {
            compensator.snapshot().in_flight as u64
        })
    }
}
