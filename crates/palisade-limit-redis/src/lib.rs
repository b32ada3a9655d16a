//! Fleet-wide rate limits on Redis: one round trip per decision, Redis's own
//! clock, and a local fallback when Redis is slow or down.
//!
//! A limit of the local [`palisade_limit::RateLimiter`] holds in one process. A
//! service of 20 replicas that must keep an upstream's quota of 1 000 calls a
//! second, or give each API key 100 calls a minute across the fleet, keeps the
//! limit where every replica sees it: here, in Redis.
//!
//! - **One round trip per decision**: a GCRA in a Lua script, run by `EVALSHA`
//!   (loaded once; a `NOSCRIPT` after a Redis restart loads it again). The time is
//!   Redis's own `TIME`, so replicas whose clocks are skewed agree. The state of a
//!   key is one integer (its theoretical arrival time in microseconds) under a key
//!   that expires once the key is back at a full burst: idle keys leave nothing.
//!   Weighted decisions take a `cost`. The answer carries allowed/refused, the
//!   remaining burst and the retry-after, and converts into the local limiter's
//!   [`RateLimited`](palisade_limit::RateLimited), so a
//!   [`Rejection`](palisade_classify::Rejection) and `Retry-After` read the same.
//! - **The same interface as the local limiter**: [`RedisRateLimiter::key`] is a
//!   [`palisade_limit::RateLimit`], which a palisade `Pipeline` takes with
//!   `rate_limit`, and so its tower layer and a configuration file's `redis`
//!   section.
//! - **Failure handling**: each decision waits at most the smaller of
//!   [`timeout`](RedisLimitConfig::timeout) and the caller's remaining deadline.
//!   On a timeout, a lost connection or an error it falls back
//!   ([`FallbackMode`]: by default to a local limit of this process's share of the
//!   fleet quota). A circuit breaker around Redis makes a dead Redis cost nothing
//!   per decision once it opens, and lets probes find it again. A small cache of
//!   keys refused lately refuses a key that is certainly over its limit without a
//!   round trip. A reply of the wrong shape, a script error or a key holding
//!   something else is an [`Error`] that the decision falls back on: never a panic,
//!   never an unbounded wait. Shadow mode decides and counts but never refuses.
//! - **Observability**: [`RedisRateLimiter::snapshot`] counts decisions, fallbacks,
//!   timeouts, errors and round-trip time; fallbacks and breaker changes are
//!   `tracing` events; with the `metrics` feature, decisions, fallbacks and the
//!   round-trip time go to the `metrics` facade.
//!
//! # Redis Cluster
//!
//! Each decision reads and writes one key, named in `KEYS`, so the script runs
//! wherever the key's slot is. To keep the keys of one tenant on one slot, put a
//! hash tag in the prefix or the key (`{tenant-42}:api`): Redis hashes only the
//! part between the first braces. The connection here is to one server (or a
//! proxy in front of a cluster); a cluster-aware client is not built in.
//!
//! # Example
//!
//! The configuration, as a file holds it:
//!
//! ```
//! use palisade_limit_redis::{FallbackMode, RedisLimitConfig};
//! use std::time::Duration;
//!
//! let config: RedisLimitConfig = toml::from_str(r#"
//!     url = "redis://127.0.0.1:6379"
//!     key_prefix = "{billing}:"
//!     rate = 1000
//!     period = "1s"
//!     timeout = "20ms"
//!     replicas = 20
//! "#).unwrap();
//! config.validate().unwrap();
//! assert_eq!(config.fallback, FallbackMode::Local);
//! // Each of the 20 replicas keeps 50 a second while Redis is away.
//! assert_eq!(config.local_share().rate, 50);
//!
//! // Out of range is refused, naming the field.
//! let bad = config.with_timeout(Duration::ZERO);
//! assert_eq!(bad.validate().unwrap_err().field(), "timeout");
//! ```
//!
//! A decision, with a Redis running:
//!
//! ```no_run
//! use palisade_context::Context;
//! use palisade_limit_redis::{RedisLimitConfig, RedisRateLimiter};
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisLimitConfig::new("redis://127.0.0.1:6379", 100, Duration::from_secs(60));
//! let limiter = RedisRateLimiter::connect(config).await?;
//!
//! let ctx = Context::background();
//! let decision = limiter.decide(&ctx, b"api-key-42", 1).await;
//! if decision.allowed {
//!     // ... serve the request; `decision.remaining` more would pass now ...
//! } else {
//!     // ... answer 429 with Retry-After: decision.retry_after ...
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Minimum Rust version
//!
//! 1.85, as the workspace: the `redis` client it builds on (1.x) declares the
//! same.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod limiter;
mod refused;
mod script;

pub use config::{ConfigError, FallbackMode, MAX_RATE_PER_SECOND, RedisLimitConfig};
pub use error::Error;
pub use limiter::{Decide, Decision, RedisKeyLimit, RedisLimitSnapshot, RedisRateLimiter, Source};

/// The Lua script of one decision, for reading or loading by hand.
///
/// `EVALSHA <sha> 1 <key> <interval µs> <tolerance µs> <cost>` answers the
/// remaining burst (`>= 0`) when the decision passes, or minus the microseconds
/// until the cost would pass (`< 0`).
pub const SCRIPT: &str = script::GCRA;
