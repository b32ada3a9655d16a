//! What can go wrong with Redis: each a clear error, never a panic.

use std::fmt;

use crate::config::ConfigError;

/// Why a limiter could not be made, or why a decision could not be asked of
/// Redis (and so [fell back](crate::FallbackMode)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is out of range.
    Config(ConfigError),
    /// The URL does not name a Redis server.
    Url(String),
    /// The server could not be reached in time at start-up
    /// ([`RedisRateLimiter::connect`](crate::RedisRateLimiter::connect)).
    Unreachable(String),
    /// Redis did not answer within the decision's bound.
    Timeout,
    /// The breaker around Redis is open: Redis was not asked.
    BreakerOpen,
    /// Redis answered with an error (a script error, a key of another type, a
    /// lost connection).
    Redis(String),
    /// Redis answered, but not in the shape the script answers in.
    Reply(String),
}

impl Error {
    pub(crate) fn reply(what: String) -> Self {
        Error::Reply(what)
    }

    pub(crate) fn redis(e: &redis::RedisError) -> Self {
        Error::Redis(e.to_string())
    }

    /// A short name for metrics and events: `config`, `url`, `unreachable`,
    /// `timeout`, `breaker_open`, `redis` or `reply`.
    pub fn kind_str(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Url(_) => "url",
            Error::Unreachable(_) => "unreachable",
            Error::Timeout => "timeout",
            Error::BreakerOpen => "breaker_open",
            Error::Redis(_) => "redis",
            Error::Reply(_) => "reply",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "redis rate limit: {e}"),
            Error::Url(e) => write!(f, "redis rate limit: invalid url: {e}"),
            Error::Unreachable(e) => write!(f, "redis rate limit: server unreachable: {e}"),
            Error::Timeout => f.write_str("redis rate limit: redis did not answer in time"),
            Error::BreakerOpen => f.write_str("redis rate limit: the breaker around redis is open"),
            Error::Redis(e) => write!(f, "redis rate limit: redis error: {e}"),
            Error::Reply(e) => write!(f, "redis rate limit: unexpected reply: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
