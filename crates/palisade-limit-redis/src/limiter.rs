//! [`RedisRateLimiter`]: the decision, its bound, the breaker and the fallbacks.

use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, RandomState};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use palisade_breaker::{Breaker, State};
use palisade_classify::Outcome;
use palisade_clock::{Clock, DefaultClock, Timestamp};
use palisade_context::Context;
use palisade_limit::{Acquire, KeyedRateLimiter, KeyedRateLimiterConfig, RateLimit, RateLimited};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, ServerErrorKind, Value};

use crate::config::{FallbackMode, RedisLimitConfig};
use crate::error::Error;
use crate::refused::RefusedCache;
use crate::script::{self, Reply};

/// Where a [`Decision`] came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// Redis decided (one `EVALSHA`).
    Redis,
    /// The key was refused lately until after now: refused without a round trip.
    RefusedCache,
    /// Decided without asking anyone: a cost of 0 (passes) or over the burst
    /// (never passes).
    Local,
    /// Redis could not answer, for this reason; the [fallback](FallbackMode)
    /// decided.
    Fallback(Error),
}

/// One rate-limit decision and what it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// How many more single-unit calls would pass right after this one (0 when not
    /// known: from the cache, or a fallback that does not count).
    pub remaining: u64,
    /// When refused, how long until the cost asked for would pass
    /// ([`Duration::MAX`] when it never does: more than the burst at once).
    pub retry_after: Duration,
    /// In shadow mode, a decision that would have refused but let the call go.
    pub shadowed: bool,
    /// Who decided.
    pub source: Source,
}

impl Decision {
    fn allowed(remaining: u64, source: Source) -> Self {
        Decision {
            allowed: true,
            remaining,
            retry_after: Duration::ZERO,
            shadowed: false,
            source,
        }
    }

    fn refused(retry_after: Duration, remaining: u64, source: Source) -> Self {
        Decision {
            allowed: false,
            remaining,
            retry_after,
            shadowed: false,
            source,
        }
    }

    /// The decision as the local limiter's result: `Ok`, or [`RateLimited`] with
    /// the retry-after (so [`Rejection`](palisade_classify::Rejection) and
    /// `Retry-After` read as with the local limiter).
    pub fn into_result(self, cost: u32, burst: u64) -> Result<(), RateLimited> {
        if self.allowed {
            Ok(())
        } else if self.retry_after == Duration::MAX {
            Err(RateLimited::over_capacity(cost, burst))
        } else {
            Err(RateLimited::retry_in(self.retry_after))
        }
    }
}

/// The counters of a [`RedisRateLimiter`], read by
/// [`snapshot`](RedisRateLimiter::snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisLimitSnapshot {
    /// Decisions Redis allowed.
    pub allowed: u64,
    /// Decisions Redis refused.
    pub refused: u64,
    /// Decisions refused by the cache of keys refused lately, without a round trip.
    pub cache_refused: u64,
    /// Decisions made by the fallback.
    pub fallbacks: u64,
    /// Of those, the ones the fallback refused.
    pub fallback_refused: u64,
    /// Redis calls that timed out.
    pub timeouts: u64,
    /// Redis calls that ended with an error or a reply of the wrong shape.
    pub errors: u64,
    /// Decisions that fell back because the breaker was open.
    pub breaker_open: u64,
    /// Scripts loaded after a `NOSCRIPT` (the first call, and after a Redis restart
    /// or `SCRIPT FLUSH`).
    pub script_loads: u64,
    /// In shadow mode, decisions that would have refused.
    pub shadow_refused: u64,
    /// Redis round trips measured, and their total time in microseconds.
    pub round_trips: u64,
    /// The total time of those round trips, in microseconds.
    pub round_trip_micros: u64,
    /// The state of the breaker around Redis.
    pub breaker: Option<State>,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    refused: AtomicU64,
    cache_refused: AtomicU64,
    fallbacks: AtomicU64,
    fallback_refused: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    breaker_open: AtomicU64,
    script_loads: AtomicU64,
    shadow_refused: AtomicU64,
    round_trips: AtomicU64,
    round_trip_micros: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A fleet-wide GCRA rate limit kept on Redis, keyed; see the
/// [crate docs](crate).
///
/// Cloning is cheap: clones share the connection, the breaker, the cache and the
/// counters.
pub struct RedisRateLimiter<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Clock> {
    config: RedisLimitConfig,
    interval_us: u64,
    tolerance_us: u64,
    burst: u64,
    prefix: Box<[u8]>,
    conn: ConnectionManager,
    script: redis::Script,
    breaker: Breaker<C>,
    local: Option<KeyedRateLimiter<Vec<u8>, C>>,
    refused: Option<RefusedCache>,
    hasher: RandomState,
    epoch: Timestamp,
    counters: Counters,
    clock: C,
}

impl<C: Clock> Clone for RedisRateLimiter<C> {
    fn clone(&self) -> Self {
        RedisRateLimiter {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for RedisRateLimiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("key_prefix", &self.inner.config.key_prefix)
            .field("rate", &self.inner.config.rate)
            .field("period", &self.inner.config.period)
            .field("burst", &self.inner.burst)
            .field("fallback", &self.inner.config.fallback)
            .field("breaker", &self.inner.breaker.state())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis of `config.url`, connecting on its first decision
    /// (until then, and while it cannot connect, decisions fall back). Must be
    /// called within a tokio runtime (the connection's task runs there); outside
    /// one it is [`Error::Unreachable`].
    pub fn new(config: RedisLimitConfig) -> Result<Self, Error> {
        Self::with_clock(config, DefaultClock::default())
    }

    /// [`new`](Self::new), then one `PING` within `connect_timeout`: a server that
    /// cannot be reached at start-up is [`Error::Unreachable`] (a later outage is
    /// what the fallback is for).
    pub async fn connect(config: RedisLimitConfig) -> Result<Self, Error> {
        Self::connect_with_clock(config, DefaultClock::default()).await
    }
}

impl<C: Clock> RedisRateLimiter<C> {
    /// [`new`](RedisRateLimiter::new) with the limiter's local time (the refused
    /// cache, the breaker, the local fallback, the decision's bound) read from
    /// `clock`. The limit itself runs on Redis's clock.
    pub fn with_clock(config: RedisLimitConfig, clock: C) -> Result<Self, Error> {
        config.validate()?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Url(format!("{:?}: {e}", config.url)))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Unreachable(
                "no tokio runtime to run the connection in".to_owned(),
            ));
        }
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| Error::Url(e.to_string()))?;
        let breaker = Breaker::builder(config.breaker.clone())
            .clock(clock.clone())
            .name("redis-rate-limit")
            .on_transition(|t| {
                tracing::warn!(from = ?t.from, to = ?t.to, "redis rate limit: breaker around redis changed state");
            })
            .build()
            .map_err(|e| Error::Config(e.within("breaker")))?;
        let local = match config.fallback {
            FallbackMode::Local => Some(
                KeyedRateLimiter::with_clock(
                    KeyedRateLimiterConfig::new(config.local_share(), config.local_max_keys),
                    clock.clone(),
                )
                .map_err(Error::Config)?,
            ),
            _ => None,
        };
        let (interval_us, tolerance_us) = config.gcra_micros();
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                interval_us,
                tolerance_us,
                burst: u64::from(config.effective_burst()),
                prefix: config.key_prefix.as_bytes().into(),
                conn,
                script: redis::Script::new(script::GCRA),
                breaker,
                local,
                refused: RefusedCache::new(config.refused_cache),
                hasher: RandomState::new(),
                epoch: clock.now(),
                counters: Counters::default(),
                clock,
                config,
            }),
        })
    }

    /// [`connect`](RedisRateLimiter::connect) with local time from `clock`.
    pub async fn connect_with_clock(config: RedisLimitConfig, clock: C) -> Result<Self, Error> {
        let limiter = Self::with_clock(config, clock)?;
        let bound = limiter.inner.config.connect_timeout;
        let mut cmd = redis::cmd("PING");
        let _ = &mut cmd;
        match limiter.send(&cmd, bound).await {
            Ok(Value::SimpleString(_)) | Ok(Value::BulkString(_)) => Ok(limiter),
            Ok(other) => Err(Error::Unreachable(format!("PING answered {other:?}"))),
            Err(Error::Timeout) => Err(Error::Unreachable(format!(
                "no answer within {}",
                palisade_clock::duration::format(bound)
            ))),
            Err(e) => Err(Error::Unreachable(e.to_string())),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RedisLimitConfig {
        &self.inner.config
    }

    /// The most units that pass at once.
    pub fn burst(&self) -> u64 {
        self.inner.burst
    }

    /// The counters, read now.
    pub fn snapshot(&self) -> RedisLimitSnapshot {
        let c = &self.inner.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisLimitSnapshot {
            allowed: r(&c.allowed),
            refused: r(&c.refused),
            cache_refused: r(&c.cache_refused),
            fallbacks: r(&c.fallbacks),
            fallback_refused: r(&c.fallback_refused),
            timeouts: r(&c.timeouts),
            errors: r(&c.errors),
            breaker_open: r(&c.breaker_open),
            script_loads: r(&c.script_loads),
            shadow_refused: r(&c.shadow_refused),
            round_trips: r(&c.round_trips),
            round_trip_micros: r(&c.round_trip_micros),
            breaker: Some(self.inner.breaker.state()),
        }
    }

    /// The breaker around Redis (to read its state, or force it).
    pub fn breaker(&self) -> &Breaker<C> {
        &self.inner.breaker
    }

    /// One `PING` on the limiter's connection, bounded by the decision timeout: a
    /// readiness probe, and the round trip a decision is measured against.
    pub async fn ping(&self) -> Result<(), Error> {
        match self
            .send(&redis::cmd("PING"), self.inner.config.timeout)
            .await?
        {
            Value::SimpleString(_) | Value::BulkString(_) => Ok(()),
            other => Err(Error::reply(format!("PING answered {other:?}"))),
        }
    }

    /// This limiter bound to one key: a [`RateLimit`] for a
    /// [`Pipeline`](https://docs.rs/palisade) or anything else that asks one.
    pub fn key(&self, key: impl AsRef<[u8]>) -> RedisKeyLimit<C> {
        RedisKeyLimit {
            limiter: self.clone(),
            key: key.as_ref().into(),
        }
    }

    /// Takes `cost` units of `key`'s limit for a call under `ctx`: the local
    /// limiter's result ([`RateLimited`] with the retry-after when refused).
    pub fn acquire<'a>(&'a self, ctx: &'a Context, key: &'a [u8], cost: u32) -> Acquire<'a> {
        let burst = self.inner.burst;
        match self.decide_at_once(key, cost) {
            Some(decision) => Acquire::ready(decision.into_result(cost, burst)),
            None => {
                Acquire::pending(
                    async move { self.ask(ctx, key, cost).await.into_result(cost, burst) },
                )
            }
        }
    }

    /// Takes `cost` units of `key`'s limit for a call under `ctx`, with everything
    /// the decision knows (remaining burst, who decided). Waits at most the smaller
    /// of the configured `timeout` and `ctx`'s remaining time, then falls back.
    pub fn decide<'a>(&'a self, ctx: &'a Context, key: &'a [u8], cost: u32) -> Decide<'a> {
        match self.decide_at_once(key, cost) {
            Some(decision) => Decide {
                inner: DecideInner::Ready(Some(decision)),
            },
            None => Decide {
                inner: DecideInner::Pending(Box::pin(self.ask(ctx, key, cost))),
            },
        }
    }

    /// What is decided without a round trip: a cost of 0 or over the burst, and a
    /// key the cache knows is refused.
    #[inline]
    fn decide_at_once(&self, key: &[u8], cost: u32) -> Option<Decision> {
        let inner = &*self.inner;
        if cost == 0 {
            return Some(Decision::allowed(0, Source::Local));
        }
        if u64::from(cost) > inner.burst {
            return Some(Decision::refused(Duration::MAX, 0, Source::Local));
        }
        let cache = inner.refused.as_ref()?;
        let left = cache.refused(self.hash(key), self.now_ms())?;
        bump(&inner.counters.cache_refused);
        #[cfg(feature = "metrics")]
        metrics::counter!("palisade_redis_limit_decisions_total", "source" => "cache", "allowed" => "false").increment(1);
        Some(self.shadow(Decision::refused(
            Duration::from_millis(left),
            0,
            Source::RefusedCache,
        )))
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.inner.hasher.hash_one(key)
    }

    fn now_ms(&self) -> u64 {
        let elapsed = self
            .inner
            .clock
            .now()
            .saturating_duration_since(self.inner.epoch);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// In shadow mode a refusal lets the call go, counted.
    fn shadow(&self, mut decision: Decision) -> Decision {
        if self.inner.config.shadow && !decision.allowed {
            bump(&self.inner.counters.shadow_refused);
            tracing::info!(retry_after = ?decision.retry_after, "redis rate limit (shadow): would refuse");
            decision.allowed = true;
            decision.shadowed = true;
        }
        decision
    }

    /// The round trip, bounded; a fallback when it cannot be made.
    async fn ask(&self, ctx: &Context, key: &[u8], cost: u32) -> Decision {
        let inner = &*self.inner;
        let permit = match inner.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                bump(&inner.counters.breaker_open);
                return self.fallback(key, cost, Error::BreakerOpen);
            }
        };
        let bound = match ctx.remaining() {
            Some(left) => left.min(inner.config.timeout),
            None => inner.config.timeout,
        };
        if bound.is_zero() {
            drop(permit);
            return self.fallback(key, cost, Error::Timeout);
        }
        let sent = inner.clock.now();
        let mut full = Vec::with_capacity(inner.prefix.len() + key.len());
        full.extend_from_slice(&inner.prefix);
        full.extend_from_slice(key);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(inner.script.get_hash())
            .arg(1)
            .arg(&full)
            .arg(inner.interval_us)
            .arg(inner.tolerance_us)
            .arg(cost);
        let answer = match self.send(&cmd, bound).await {
            Err(Error::Redis(e)) if e.starts_with("NOSCRIPT") => {
                self.load_and_retry(&cmd, sent, bound).await
            }
            other => other,
        };
        let took = inner.clock.now().saturating_duration_since(sent);
        let reply = answer.and_then(|v| script::parse(&v, cost, inner.interval_us));
        match reply {
            Ok(reply) => {
                permit.record(Outcome::Success);
                let c = &inner.counters;
                bump(&c.round_trips);
                c.round_trip_micros.fetch_add(
                    u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                #[cfg(feature = "metrics")]
                metrics::histogram!("palisade_redis_limit_round_trip_seconds")
                    .record(took.as_secs_f64());
                self.decided(key, reply, sent)
            }
            Err(error) => {
                permit.record(Outcome::transient());
                match &error {
                    Error::Timeout => bump(&inner.counters.timeouts),
                    _ => bump(&inner.counters.errors),
                }
                self.fallback(key, cost, error)
            }
        }
    }

    /// After a `NOSCRIPT`: loads the script, then asks again, within what is left
    /// of the bound.
    async fn load_and_retry(
        &self,
        cmd: &Cmd,
        sent: Timestamp,
        bound: Duration,
    ) -> Result<Value, Error> {
        bump(&self.inner.counters.script_loads);
        let left = || bound.saturating_sub(self.inner.clock.now().saturating_duration_since(sent));
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(script::GCRA);
        match self.send(&load, left()).await? {
            Value::BulkString(_) | Value::SimpleString(_) => {}
            other => return Err(Error::reply(format!("SCRIPT LOAD answered {other:?}"))),
        }
        tracing::debug!("redis rate limit: script loaded");
        self.send(cmd, left()).await
    }

    fn decided(&self, key: &[u8], reply: Reply, sent: Timestamp) -> Decision {
        let inner = &*self.inner;
        let c = &inner.counters;
        if reply.allowed {
            bump(&c.allowed);
            #[cfg(feature = "metrics")]
            metrics::counter!("palisade_redis_limit_decisions_total", "source" => "redis", "allowed" => "true").increment(1);
            return Decision::allowed(reply.remaining, Source::Redis);
        }
        bump(&c.refused);
        #[cfg(feature = "metrics")]
        metrics::counter!("palisade_redis_limit_decisions_total", "source" => "redis", "allowed" => "false").increment(1);
        if let (Some(cache), true) = (&inner.refused, reply.retry_after_one_us > 0) {
            // Counted from when the decision was sent, which is no later than when
            // Redis made it: the cached refusal never outlasts the real one.
            let sent_ms = u64::try_from(sent.saturating_duration_since(inner.epoch).as_millis())
                .unwrap_or(u64::MAX);
            let until = sent_ms.saturating_add(reply.retry_after_one_us / 1000);
            cache.insert(self.hash(key), until);
        }
        self.shadow(Decision::refused(
            Duration::from_micros(reply.retry_after_us),
            reply.remaining,
            Source::Redis,
        ))
    }

    #[cold]
    fn fallback(&self, key: &[u8], cost: u32, error: Error) -> Decision {
        let inner = &*self.inner;
        bump(&inner.counters.fallbacks);
        #[cfg(feature = "metrics")]
        metrics::counter!("palisade_redis_limit_fallbacks_total", "reason" => error.kind_str())
            .increment(1);
        tracing::debug!(reason = error.kind_str(), error = %error, mode = ?inner.config.fallback, "redis rate limit: falling back");
        let source = Source::Fallback(error);
        let decision = match inner.config.fallback {
            FallbackMode::Allow => Decision::allowed(0, source),
            FallbackMode::Deny => {
                let retry = inner
                    .breaker
                    .try_acquire()
                    .err()
                    .and_then(|r| r.retry_after());
                Decision::refused(retry.unwrap_or(inner.config.timeout), 0, source)
            }
            _ => match &inner.local {
                // A weighted decision counts as `cost` single ones here.
                Some(local) => {
                    let mut verdict = Ok(());
                    for _ in 0..cost {
                        verdict = local.check(key);
                        if verdict.is_err() {
                            break;
                        }
                    }
                    match verdict {
                        Ok(()) => Decision::allowed(0, source),
                        Err(limited) => Decision::refused(limited.retry_after(), 0, source),
                    }
                }
                None => Decision::allowed(0, source),
            },
        };
        if !decision.allowed {
            bump(&inner.counters.fallback_refused);
        }
        self.shadow(decision)
    }

    /// Sends one command, waiting at most `bound` (on the limiter's clock).
    async fn send(&self, cmd: &Cmd, bound: Duration) -> Result<Value, Error> {
        let mut conn = self.inner.conn.clone();
        let call = conn.send_packed_command(cmd);
        let sleep = self.inner.clock.sleep(bound);
        let mut call = pin!(call);
        let mut sleep = pin!(sleep);
        let answer = poll_fn(|cx| {
            if let Poll::Ready(r) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(r));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match answer {
            None => Err(Error::Timeout),
            Some(Ok(Value::ServerError(e))) => Err(Error::Redis(match e.details() {
                Some(details) => format!("{} {details}", e.code()),
                None => e.code().to_owned(),
            })),
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                Err(Error::Redis(format!("NOSCRIPT {e}")))
            }
            Some(Err(e)) if e.is_timeout() => Err(Error::Timeout),
            Some(Err(e)) => Err(Error::redis(&e)),
        }
    }
}

/// The future of [`RedisRateLimiter::decide`].
#[must_use = "a decision does nothing until awaited"]
pub struct Decide<'a> {
    inner: DecideInner<'a>,
}

enum DecideInner<'a> {
    Ready(Option<Decision>),
    Pending(Pin<Box<dyn Future<Output = Decision> + Send + 'a>>),
}

impl fmt::Debug for Decide<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Decide")
    }
}

impl Future for Decide<'_> {
    type Output = Decision;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Decision> {
        match &mut self.get_mut().inner {
            DecideInner::Ready(d) => match d.take() {
                Some(d) => Poll::Ready(d),
                // Polled after it completed: stays pending rather than panic.
                None => Poll::Pending,
            },
            DecideInner::Pending(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// A [`RedisRateLimiter`] bound to one key, made by
/// [`RedisRateLimiter::key`]: a [`RateLimit`] that a pipeline (and its tower
/// layer, and a configuration file's `redis` section) asks before each attempt.
#[derive(Clone)]
pub struct RedisKeyLimit<C: Clock = DefaultClock> {
    limiter: RedisRateLimiter<C>,
    key: Box<[u8]>,
}

impl<C: Clock> RedisKeyLimit<C> {
    /// The limiter.
    pub fn limiter(&self) -> &RedisRateLimiter<C> {
        &self.limiter
    }

    /// The key (without the prefix).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl<C: Clock> fmt::Debug for RedisKeyLimit<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyLimit")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("limiter", &self.limiter)
            .finish()
    }
}

impl<C: Clock> RateLimit for RedisKeyLimit<C> {
    fn acquire<'a>(&'a self, ctx: &'a Context, cost: u32) -> Acquire<'a> {
        self.limiter.acquire(ctx, &self.key, cost)
    }
}
