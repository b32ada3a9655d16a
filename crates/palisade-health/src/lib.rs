//! Health that tells the truth about a service's dependencies.
//!
//! A `/healthz` that checks only local state keeps a service in the load
//! balancer while every call it makes fails; one that fails whenever a breaker
//! opens takes every instance out at once, even while fallbacks answer. This
//! crate computes **startup**, **liveness** and **readiness** from what the
//! service's resilience pipelines observe (their counters, read off the request
//! path), from active probes run in the background, and from checks of local
//! state, with hysteresis so it does not flap, and serves them as
//! `application/health+json`, Kubernetes-style `/livez`, `/readyz`, `/startupz`,
//! and (feature `grpc`) the gRPC `grpc.health.v1.Health` service.
//!
//! ```
//! use palisade_health::{Criticality, Group, Groups, Health, Observation, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A dependency's counters; with the facade, pass the pipeline itself.
//! let users_api = || Observation::default();
//! let health = Health::builder()
//!     .dependency("users-api", Criticality::Critical, users_api)
//!     .check("disk", Criticality::Critical, Groups::LIVENESS, || true)
//!     .start()?;
//! assert_eq!(health.status(Group::Readiness), Status::Pass);
//! health.begin_shutdown();
//! assert_eq!(health.status(Group::Readiness), Status::Fail);
//! assert_eq!(health.status(Group::Liveness), Status::Pass);
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics, and why
//!
//! - **Liveness never depends on a dependency.** A database outage must not
//!   restart every pod; restarting cures nothing the database does. Adding a
//!   dependency to liveness is a configuration error. Liveness holds only local
//!   checks (and, if asked, the runtime's lag).
//! - **Readiness fails when a critical dependency is unavailable and its calls are
//!   not answered by a fallback.** An open breaker on an *optional* dependency, or
//!   on a critical one whose fallback answers, is **`warn`**, with the reason:
//!   the instance still serves, and taking it out of the load balancer would move
//!   the same load onto instances that see the same dependency. This is the
//!   lesson of Spring Boot's circuit-breaker health indicator, which resilience4j
//!   ships off by default because one open breaker took every instance out at
//!   once.
//! - **Silent failure is caught.** A dependency can fail while every local check
//!   passes and no breaker opens (every call answers 200 late, every call times
//!   out and is retried). The [`DependencyRules`] judge each dependency from its
//!   counters: calls made and none succeeding for `no_success_for` fails it; a
//!   share of timeouts above `timeouts_fail` fails it and above `timeouts_warn`
//!   warns; a fallback share above `fallback_warn` warns ("everything is served
//!   from the stale cache" is visible); a p99 latency near the deadline warns.
//! - **Hysteresis**: a new status is reported only once it has been seen for
//!   [`Hysteresis::worse`] (default 2) or [`Hysteresis::better`] (default 3)
//!   consecutive evaluations.
//! - **Shutdown**: [`Health::begin_shutdown`] fails readiness at once, without
//!   hysteresis, so the service drains before it stops.
//! - **Startup**: until every startup component has passed once, readiness fails
//!   ("not started yet"); then startup passes for good.
//! - **A group's status** is the worst of its components, an optional
//!   component's `fail` counting as `warn`. `warn` still answers "up" (HTTP 200,
//!   gRPC `SERVING`); only `fail` answers 503 / `NOT_SERVING`.
//! - **Bad input never breaks the endpoint**: a probe that panics or outlasts its
//!   timeout, a check or a source that panics, fails that component with the
//!   reason; a health with no component is a configuration error.
//!
//! Every evaluation reads each source once, judges it, applies the hysteresis,
//! publishes a [`HealthReport`] (see [`Health::watch`]), sets the
//! `palisade_health_status{group}` and `palisade_health_component_status{component}`
//! gauges (feature `metrics`; 0 pass, 1 warn, 2 fail), and emits a tracing event
//! (target `palisade::health`, `warn` for a worse status) for every change.
//!
//! Time is tokio's: tests pause it (`#[tokio::test(start_paused = true)]`) and
//! every rule runs in virtual time.
//!
//! # Features
//!
//! | feature | what |
//! | --- | --- |
//! | `http` | [`HealthService`], a tower `Service` for hyper and axum |
//! | `axum` | `Health::router`, the endpoints as an axum `Router` |
//! | `grpc` | `Health::grpc_service`, the gRPC health service (tonic-health; Rust 1.88) |
//! | `metrics` | the gauges above, through the `metrics` facade |

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod health;
#[cfg(feature = "http")]
mod http;
mod observe;
mod report;
mod status;

#[cfg(feature = "grpc")]
mod grpc;

#[cfg(feature = "grpc")]
pub use grpc::GRPC_SERVICES;
pub use health::{Change, ComponentKind, Health, HealthBuilder, Hysteresis, ProbeConfig};
#[cfg(feature = "http")]
pub use http::HealthService;
pub use observe::{Availability, DependencyRules, Observation, Observe};
pub use report::{ComponentReport, HEALTH_JSON, HealthReport};
pub use status::{Criticality, Group, Groups, Observed, Status, Verdict};

/// A health configuration that cannot work, naming the field, the value given
/// and what is allowed (the shape every Palisade crate shares).
pub use palisade_clock::ConfigError;
