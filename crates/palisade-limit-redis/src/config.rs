//! [`RedisLimitConfig`]: where the limit is kept, how fast it lets calls through,
//! and what a decision does when Redis cannot answer.

use std::time::Duration;

use palisade_breaker::BreakerConfig;
use palisade_limit::RateLimiterConfig;
use serde::{Deserialize, Serialize};

pub use palisade_clock::ConfigError;

/// What a decision answers when Redis cannot: the breaker around Redis is open,
/// the call timed out, the connection is lost, or the reply was an error or of the
/// wrong shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FallbackMode {
    /// Fail open to a local limit: each process lets through its share of the
    /// fleet's quota, `rate / replicas` with a burst of `burst / replicas` (each at
    /// least 1), per key, in this process's memory.
    ///
    /// The default: while every replica falls back, the fleet as a whole still
    /// keeps about its quota, so the dependency the limit protects is not flooded
    /// because Redis went away; and a Redis outage does not become an outage of
    /// the service, as failing closed would make it.
    #[default]
    Local,
    /// Fail open without a limit: every call passes while Redis cannot answer. For
    /// limits that are a courtesy rather than a protection.
    Allow,
    /// Fail closed: every call is refused while Redis cannot answer. For quotas
    /// that must never be exceeded (paid upstream quotas with penalties).
    Deny,
}

/// A fleet-wide rate limit kept on Redis: `rate` calls per `period` for each key,
/// of which up to `burst` may come at once, for the whole fleet of processes that
/// share the Redis and the `key_prefix`.
///
/// Durations are written in the [duration grammar](palisade_clock::duration#the-grammar)
/// of every Palisade configuration.
///
/// ```
/// use palisade_limit_redis::{FallbackMode, RedisLimitConfig};
/// use std::time::Duration;
///
/// let config: RedisLimitConfig = toml::from_str(r#"
///     url = "redis://10.0.0.5:6379/0"
///     key_prefix = "billing:"
///     rate = 1000
///     period = "1s"
///     timeout = "20ms"
///     fallback = "local"
///     replicas = 20
/// "#).unwrap();
/// assert!(config.validate().is_ok());
/// assert_eq!(config.fallback, FallbackMode::Local);
/// assert_eq!(config.local_share().rate, 50);
/// assert_eq!(config.timeout, Duration::from_millis(20));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisLimitConfig {
    /// The Redis server, as a `redis://` (or `rediss://`, `redis+unix://`) URL.
    /// Default `redis://127.0.0.1:6379`, a Redis on the same host.
    pub url: String,
    /// What every key is prefixed with in Redis, so that several limits (and other
    /// users of the same Redis) do not share keys by accident. Default
    /// `palisade:limit:`.
    ///
    /// In Redis Cluster each decision touches one key only, so any key works; to
    /// put the keys of one tenant on one slot, write a hash tag in the prefix or the
    /// key: `{tenant-42}:` (only the part between the braces is hashed).
    pub key_prefix: String,
    /// The key a pipeline built from a configuration file uses; default: the
    /// pipeline's name. Code that asks the limiter directly passes its own keys.
    pub key: Option<String>,
    /// Calls per `period`, for each key, across the fleet; `1..=1_000_000` per
    /// second (the state is kept in microseconds). Default 100.
    pub rate: u32,
    /// The period `rate` is counted over. Default one second.
    #[serde(with = "palisade_clock::duration::serde")]
    pub period: Duration,
    /// How many calls may pass at once after a quiet spell. Default (`None`):
    /// equal to `rate`.
    pub burst: Option<u32>,
    /// The longest a decision waits for Redis (a call's own deadline bounds it
    /// too, when it is shorter); `1ms..=1min`. Default 50 ms: far above a healthy
    /// round trip within one data centre (well under a millisecond), small next to
    /// the request budgets a limit usually sits in front of.
    #[serde(with = "palisade_clock::duration::serde")]
    pub timeout: Duration,
    /// The longest a connection attempt waits; `1ms..=1min`. Default one second.
    #[serde(with = "palisade_clock::duration::serde")]
    pub connect_timeout: Duration,
    /// What a decision answers when Redis cannot. Default
    /// [`FallbackMode::Local`] (see there why).
    pub fallback: FallbackMode,
    /// How many processes share the limit, for the local fallback's share;
    /// `1..=100_000`. Default 1 (the local fallback then enforces the whole quota
    /// in each process, which is the safe reading when the number is not known).
    pub replicas: u32,
    /// The most keys the local fallback keeps; `1..=10_000_000`. Default 10 000.
    pub local_max_keys: usize,
    /// How many keys refused lately are remembered, so that a key that is
    /// certainly over its limit is refused without a round trip; 0 turns the cache
    /// off. Rounded up to a power of two; at most 1 048 576. Default 1024.
    pub refused_cache: usize,
    /// The circuit breaker around Redis: once it opens, a decision falls back at
    /// once, without waiting for a timeout. Default: opens after 5 failures in a
    /// row (timeouts, errors), for 1 s, then lets probes through.
    pub breaker: BreakerConfig,
    /// Shadow mode: decide and report as usual, but never refuse (for rolling a
    /// limit out: the snapshot's `shadow_refused` counts what it would have
    /// refused). Default off.
    pub shadow: bool,
}

/// The most decisions per second the microsecond state resolves.
pub const MAX_RATE_PER_SECOND: u64 = 1_000_000;

impl Default for RedisLimitConfig {
    fn default() -> Self {
        RedisLimitConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "palisade:limit:".to_owned(),
            key: None,
            rate: 100,
            period: Duration::from_secs(1),
            burst: None,
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            fallback: FallbackMode::Local,
            replicas: 1,
            local_max_keys: 10_000,
            refused_cache: 1024,
            breaker: default_breaker(),
            shadow: false,
        }
    }
}

/// Opens after 5 failures in a row for a fixed second.
fn default_breaker() -> BreakerConfig {
    BreakerConfig::default()
        .failure_rate_threshold(None)
        .consecutive_failures(Some(5))
        .open(palisade_breaker::OpenDuration::fixed(Duration::from_secs(
            1,
        )))
}

impl RedisLimitConfig {
    /// `rate` calls per `period` on the Redis at `url`, every other field at its
    /// default.
    pub fn new(url: impl Into<String>, rate: u32, period: Duration) -> Self {
        RedisLimitConfig {
            url: url.into(),
            rate,
            period,
            ..Self::default()
        }
    }

    /// With a burst of `burst` calls.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// With keys prefixed by `prefix`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// With decisions bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With `mode` when Redis cannot answer.
    pub fn with_fallback(mut self, mode: FallbackMode) -> Self {
        self.fallback = mode;
        self
    }

    /// With `replicas` processes sharing the limit.
    pub fn with_replicas(mut self, replicas: u32) -> Self {
        self.replicas = replicas;
        self
    }

    /// With this breaker around Redis.
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        self
    }

    /// With `slots` keys refused lately remembered (0: none).
    pub fn with_refused_cache(mut self, slots: usize) -> Self {
        self.refused_cache = slots;
        self
    }

    /// In shadow mode (never refuses) or not.
    pub fn with_shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// The rate as a local limiter's configuration.
    pub fn limit(&self) -> RateLimiterConfig {
        let mut limit = RateLimiterConfig::new(self.rate, self.period);
        limit.burst = self.burst;
        limit
    }

    /// The burst in effect: `burst`, or `rate` when it is not given.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or(self.rate)
    }

    /// The local fallback's limit: this process's share of the fleet's quota.
    pub fn local_share(&self) -> RateLimiterConfig {
        let replicas = self.replicas.max(1);
        let rate = (self.rate / replicas).max(1);
        let burst = (self.effective_burst() / replicas).max(1);
        RateLimiterConfig::new(rate, self.period).with_burst(burst)
    }

    /// The GCRA's two numbers in microseconds: the interval between two calls at
    /// the steady rate, and the tolerance (`(burst - 1) × interval`).
    pub(crate) fn gcra_micros(&self) -> (u64, u64) {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        let interval = period / u64::from(self.rate.max(1));
        let tolerance =
            interval.saturating_mul(u64::from(self.effective_burst().saturating_sub(1)));
        (interval, tolerance)
    }

    /// Checks every field against its range, naming the first out of it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::new("url", &self.url, "a redis:// URL"));
        }
        self.limit().validate()?;
        let (interval, tolerance) = self.gcra_micros();
        if interval == 0 {
            return Err(ConfigError::new(
                "rate",
                self.rate,
                format!(
                    "1..={} per second (the state is kept in whole microseconds)",
                    MAX_RATE_PER_SECOND
                ),
            ));
        }
        // Lua numbers are doubles: every time in the script stays exact below 2^53 µs.
        if tolerance > 1 << 50 {
            return Err(ConfigError::new(
                "burst",
                self.effective_burst(),
                "a burst × period / rate under 35 years",
            ));
        }
        for (field, d) in [
            ("timeout", self.timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(60) {
                return Err(ConfigError::duration(field, d, "1ms..=1min"));
            }
        }
        if !(1..=100_000).contains(&self.replicas) {
            return Err(ConfigError::new("replicas", self.replicas, "1..=100000"));
        }
        if !(1..=10_000_000).contains(&self.local_max_keys) {
            return Err(ConfigError::new(
                "local_max_keys",
                self.local_max_keys,
                "1..=10000000",
            ));
        }
        if self.refused_cache > 1 << 20 {
            return Err(ConfigError::new(
                "refused_cache",
                self.refused_cache,
                "0..=1048576",
            ));
        }
        self.breaker.validate().map_err(|e| e.within("breaker"))?;
        Ok(())
    }
}
