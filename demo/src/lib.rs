//! The defence holding against a failing dependency, next to the same service
//! unprotected: the library behind `cargo xtask demo` and its end-to-end tests.
//!
//! A real HTTP dependency on loopback ([`server::Dependency`]) follows a scripted
//! [`timeline::Timeline`]: healthy, latency spikes, `503` bursts with `Retry-After`,
//! connection resets, a hard outage, recovery. The same steady load
//! ([`load::run_load`]) goes through each service under test at once, each against
//! its own copy of the dependency; [`report`] puts the runs side by side and draws
//! the timeline as SVG; [`health`] derives the service's health from its breaker
//! and a probe of the dependency. [`scenario::run_scenario`] ties it together.
//!
//! # Example
//!
//! The demo's scenario compressed to under two seconds, on real sockets:
//!
//! ```
//! use palisade_demo::report;
//! use palisade_demo::scenario::{ScenarioConfig, run_scenario};
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! let config = ScenarioConfig::compressed(0.05).expect("a valid factor");
//! let result = run_scenario(&config, |_live| {}).await?;
//! let [unprotected, protected] = &result.reports[..] else { unreachable!() };
//! assert_eq!(unprotected.requests, protected.requests);
//! // Whatever the dependency did, the fallback answered.
//! assert!(protected.success_rate_with_fallbacks() > 0.99);
//! println!("{}", report::table(&result.reports));
//! # Ok(())
//! # }
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]

pub mod health;
pub mod load;
pub mod protected;
pub mod report;
pub mod scenario;
pub mod server;
pub mod services;
pub mod timeline;
