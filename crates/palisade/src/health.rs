//! Readiness computed from what the pipelines observe: the `palisade-health`
//! crate, with every pipeline a dependency it can judge.
//!
//! A [`Pipeline`], a [`WithFallback`] and (feature `config`) a
//! [`NamedPipeline`](crate::config::NamedPipeline) are [`Observe`] sources: health
//! reads their [`CallCounts`](crate::CallCounts) and breaker state, off the
//! request path. A pipeline with a fallback says so, so that an open breaker
//! whose calls the fallback answers is `warn`, not `fail`. The deadline the
//! latency rule compares against is the pipeline's total timeout (or its
//! attempt timeout); the pipeline does not time healthy calls, so the latency
//! rule applies to sources that report a p99 of their own.
//!
//! ```
//! use palisade::health::{Criticality, Group, Health, Status};
//! use palisade::Pipeline;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let users = Pipeline::builder("users-api").build()?;
//! let health = Health::builder()
//!     .dependency("users-api", Criticality::Critical, users.clone())
//!     .start()?;
//! assert_eq!(health.status(Group::Readiness), Status::Pass);
//! # Ok(())
//! # }
//! ```

pub use palisade_health::*;

use palisade_clock::Clock;

use crate::{Pipeline, WithFallback};

fn observation<K, C: Clock>(pipeline: &Pipeline<K, C>, has_fallback: bool) -> Observation {
    let calls = pipeline.calls();
    let mut o = Observation::default();
    #[cfg(feature = "breaker")]
    if let Some(breaker) = pipeline.breaker() {
        use palisade_breaker::State;
        o.availability = match breaker.state() {
            State::Open | State::ForcedOpen => Availability::Unavailable,
            State::HalfOpen => Availability::Probing,
            _ => Availability::Available,
        };
    }
    o.succeeded = calls.succeeded;
    o.failed = calls.failed;
    o.timeouts = calls.timeouts;
    o.rejected = calls.rejected;
    o.executions_failed = calls.executions_failed;
    o.fallback_served = calls.fallback_served;
    o.fallback_failed = calls.fallback_failed;
    o.has_fallback = has_fallback;
    o.deadline = pipeline.total_timeout().or(pipeline.attempt_timeout());
    o
}

impl<K, C> Observe for Pipeline<K, C>
where
    K: Send + Sync + 'static,
    C: Clock,
{
    fn observe(&self) -> Observation {
        observation(self, false)
    }
}

impl<T, E, K, C> Observe for WithFallback<T, E, K, C>
where
    T: 'static,
    E: 'static,
    K: Send + Sync + 'static,
    C: Clock,
    WithFallback<T, E, K, C>: Send + Sync,
{
    fn observe(&self) -> Observation {
        observation(self.pipeline(), true)
    }
}

#[cfg(feature = "config")]
impl<K> Observe for crate::config::NamedPipeline<K>
where
    K: Send + Sync + 'static,
{
    fn observe(&self) -> Observation {
        observation(&self.current(), false)
    }
}

/// Every pipeline of a [`Registry`](crate::config::Registry) as a dependency.
#[cfg(feature = "config")]
#[cfg_attr(docsrs, doc(cfg(feature = "config")))]
pub trait RegistryHealth: Sized + sealed::Sealed {
    /// Adds each pipeline the registry has now, by its name, with
    /// `criticality`. A reload that replaces a pipeline is followed (health
    /// reads the current one); a pipeline added by a later reload is not.
    fn registry<K: Clone + Send + Sync + 'static>(
        self,
        registry: &crate::config::Registry<K>,
        criticality: Criticality,
    ) -> Self;
}

#[cfg(feature = "config")]
impl RegistryHealth for HealthBuilder {
    fn registry<K: Clone + Send + Sync + 'static>(
        mut self,
        registry: &crate::config::Registry<K>,
        criticality: Criticality,
    ) -> Self {
        for name in registry.names() {
            if let Some(pipeline) = registry.pipeline(&name) {
                self = self.dependency(name, criticality, pipeline);
            }
        }
        self
    }
}

#[cfg(feature = "config")]
mod sealed {
    pub trait Sealed {}
    impl Sealed for super::HealthBuilder {}
}
