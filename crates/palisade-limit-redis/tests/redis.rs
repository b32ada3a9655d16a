#![allow(clippy::disallowed_methods)] // a test is the root: it spawns, sleeps briefly and reads the real clock.
//! Against a real `redis-server` on loopback: decisions, accuracy across
//! instances, skewed clocks, faults (killed, slow, restarted) and bad replies.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use palisade_breaker::{BreakerConfig, OpenDuration};
use palisade_clock::ManualClock;
use palisade_context::Context;
use palisade_limit::RateLimit;
use palisade_limit_redis::{Error, FallbackMode, RedisLimitConfig, RedisRateLimiter, Source};
use support::RedisServer;

fn config(server: &RedisServer, rate: u32, period: Duration) -> RedisLimitConfig {
    RedisLimitConfig::new(server.url(), rate, period).with_key_prefix("t:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_decides_with_remaining_and_retry_after() {
    let server = RedisServer::start();
    let limiter =
        RedisRateLimiter::connect(config(&server, 10, Duration::from_secs(60)).with_burst(3))
            .await
            .unwrap();
    let ctx = Context::background();
    let first = limiter.decide(&ctx, b"k", 1).await;
    assert!(first.allowed);
    assert_eq!(first.source, Source::Redis);
    assert_eq!(first.remaining, 2);
    assert!(limiter.decide(&ctx, b"k", 2).await.allowed);
    let refused = limiter.decide(&ctx, b"k", 1).await;
    assert!(!refused.allowed);
    assert_eq!(refused.source, Source::Redis);
    // 10 a minute: one unit every 6 s.
    assert!(
        refused.retry_after > Duration::from_secs(5)
            && refused.retry_after <= Duration::from_secs(6),
        "{refused:?}"
    );
    // The next ask is answered by the cache of refused keys, without a round trip.
    let trips = limiter.snapshot().round_trips;
    let cached = limiter.decide(&ctx, b"k", 1).await;
    assert!(!cached.allowed);
    assert_eq!(cached.source, Source::RefusedCache);
    assert!(cached.retry_after <= refused.retry_after);
    assert_eq!(limiter.snapshot().round_trips, trips);
    assert_eq!(limiter.snapshot().cache_refused, 1);
    // The same as the local limiter's result.
    let err = limiter.acquire(&ctx, b"k", 1).await.unwrap_err();
    assert!(err.retry_after() > Duration::ZERO);
    assert_eq!(err.rejection().retry_after(), Some(err.retry_after()));
    // More than the burst never passes, and Redis is not asked.
    let too_many = limiter.acquire(&ctx, b"other", 4).await.unwrap_err();
    assert!(too_many.exceeds_capacity());
    // The key expires by itself, within the time back to a full burst.
    let ttl = String::from_utf8(server.command(&[b"PTTL", b"t:k"])).unwrap();
    let ttl: i64 = ttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 18_001, "pttl {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_decisions_take_their_cost() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(config(&server, 5, Duration::from_secs(60)))
        .await
        .unwrap();
    let ctx = Context::background();
    let d = limiter.decide(&ctx, b"w", 3).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
    let d = limiter.decide(&ctx, b"w", 3).await;
    assert!(!d.allowed);
    // Two units are left: a smaller cost still passes (the cache holds only keys
    // that refuse a single unit).
    assert_eq!(d.remaining, 2);
    assert!(limiter.decide(&ctx, b"w", 2).await.allowed);
    assert!(!limiter.decide(&ctx, b"w", 1).await.allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_arbitrary_bytes_are_their_own() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(config(&server, 1, Duration::from_secs(60)))
        .await
        .unwrap();
    let ctx = Context::background();
    let keys: [&[u8]; 5] = [b"", b"\0", b"\xff\xfe", b"a\r\nb", "ключ {tag}".as_bytes()];
    for key in keys {
        assert!(limiter.decide(&ctx, key, 1).await.allowed, "{key:?}");
    }
    for key in keys {
        assert!(!limiter.decide(&ctx, key, 1).await.allowed, "{key:?}");
    }
}

/// N instances, as N replicas, share one key from many tasks: what passes is
/// within GCRA's bound, `rate × elapsed + burst`, and at least 99 % of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_a_key_keep_the_fleet_bound() {
    let server = RedisServer::start();
    let (rate, burst) = (400u32, 20u32);
    let mut limiters = Vec::new();
    for _ in 0..4 {
        let cfg = config(&server, rate, Duration::from_secs(1))
            .with_burst(burst)
            .with_timeout(Duration::from_secs(1));
        limiters.push(RedisRateLimiter::connect(cfg).await.unwrap());
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let start_us = server.time_micros();
    let run_for = Duration::from_millis(1500);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let limiter = limiters[t % 4].clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            let ctx = Context::background();
            let mut asked = 0u32;
            while started.elapsed() < run_for && asked < 200_000 {
                asked += 1;
                let d = limiter.decide(&ctx, b"fleet", 1).await;
                assert!(
                    matches!(d.source, Source::Redis | Source::RefusedCache),
                    "{d:?}"
                );
                if d.allowed {
                    admitted.fetch_add(1, Ordering::Relaxed);
                } else if d.source == Source::RefusedCache {
                    // Cached: wait a little rather than spin on the cache.
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed_us = server.time_micros() - start_us;
    let bound = f64::from(rate) * elapsed_us as f64 / 1e6 + f64::from(burst);
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    assert!(
        admitted <= bound + 1.0,
        "admitted {admitted} > bound {bound}"
    );
    assert!(
        admitted >= 0.99 * bound - 2.0,
        "admitted {admitted} < 99% of bound {bound}"
    );
}

/// Two instances whose local clocks are an hour apart agree: the time is Redis's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_local_clocks_agree() {
    let server = RedisServer::start();
    let early = ManualClock::new();
    let late = ManualClock::new();
    late.advance(Duration::from_secs(3600));
    let cfg = config(&server, 10, Duration::from_secs(60))
        .with_burst(4)
        .with_refused_cache(0);
    let a = RedisRateLimiter::connect_with_clock(cfg.clone(), early)
        .await
        .unwrap();
    let b = RedisRateLimiter::connect_with_clock(cfg, late)
        .await
        .unwrap();
    let ctx = Context::background();
    let mut passed = 0;
    for i in 0..10 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let d = limiter.decide(&ctx, b"skew", 1).await;
        assert_eq!(d.source, Source::Redis);
        passed += u32::from(d.allowed);
    }
    assert_eq!(passed, 4);
    let (ra, rb) = (
        a.decide(&ctx, b"skew", 1).await,
        b.decide(&ctx, b"skew", 1).await,
    );
    assert!(
        ra.retry_after.abs_diff(rb.retry_after) < Duration::from_millis(100),
        "{ra:?} {rb:?}"
    );
}

fn fault_config(server: &RedisServer, mode: FallbackMode) -> RedisLimitConfig {
    config(server, 1000, Duration::from_secs(1))
        .with_timeout(Duration::from_millis(30))
        .with_fallback(mode)
        .with_replicas(10)
        .with_breaker(
            BreakerConfig::default()
                .failure_rate_threshold(None)
                .consecutive_failures(Some(3))
                .open(OpenDuration::fixed(Duration::from_millis(200))),
        )
}

/// The longest one decision may take while Redis is down or slow: the timeout
/// and some scheduling slack.
const BOUND: Duration = Duration::from_millis(30 + 70);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_falls_back_then_recovers() {
    let mut server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Local))
        .await
        .unwrap();
    let ctx = Context::background();
    assert_eq!(limiter.decide(&ctx, b"f", 1).await.source, Source::Redis);
    server.kill();
    // Down: every decision answers within the bound, from the local share
    // (1000 / 10 replicas = 100 a second, burst 100).
    let mut local = 0;
    for _ in 0..50 {
        let started = Instant::now();
        let d = limiter.decide(&ctx, b"f", 1).await;
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        assert!(matches!(d.source, Source::Fallback(_)), "{d:?}");
        local += u32::from(d.allowed);
    }
    assert_eq!(local, 50);
    let snap = limiter.snapshot();
    assert!(snap.breaker_open > 0, "the breaker opened: {snap:?}");
    assert!(snap.fallbacks >= 50);
    // Back: once the breaker lets a probe through, decisions come from Redis again
    // (the script is gone with the old process: NOSCRIPT, loaded again).
    server.restart();
    let loads = limiter.snapshot().script_loads;
    let started = Instant::now();
    loop {
        let d = limiter.decide(&ctx, b"f", 1).await;
        if d.source == Source::Redis {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery: {:?}",
            limiter.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(limiter.snapshot().script_loads > loads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_bounded_by_the_timeout_and_the_deadline() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Deny))
        .await
        .unwrap();
    let ctx = Context::background();
    assert!(limiter.decide(&ctx, b"s", 1).await.allowed);
    // Redis busy for 600 ms: each decision gives up after 30 ms and fails closed.
    let _sleeping = server.command_no_wait(&[b"DEBUG", b"SLEEP", b"0.6"]);
    std::thread::sleep(Duration::from_millis(20));
    for _ in 0..5 {
        let started = Instant::now();
        let d = limiter.decide(&ctx, b"s", 1).await;
        assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
        assert!(!d.allowed);
        assert!(
            matches!(
                d.source,
                Source::Fallback(Error::Timeout | Error::BreakerOpen)
            ),
            "{d:?}"
        );
    }
    assert!(limiter.snapshot().timeouts >= 3);
    // A call's deadline shorter than the timeout bounds the wait.
    limiter.breaker().reset();
    let (short, _guard) = ctx.with_timeout(Duration::from_millis(5));
    let started = Instant::now();
    let d = limiter.decide(&short, b"s", 1).await;
    assert!(
        started.elapsed() < Duration::from_millis(5 + 60),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(d.source, Source::Fallback(Error::Timeout)),
        "{d:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_modes_allow_deny_and_shadow() {
    let mut server = RedisServer::start();
    let allow = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Allow))
        .await
        .unwrap();
    let deny = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Deny))
        .await
        .unwrap();
    let shadow =
        RedisRateLimiter::connect(config(&server, 1, Duration::from_secs(60)).with_shadow(true))
            .await
            .unwrap();
    let ctx = Context::background();
    assert!(shadow.decide(&ctx, b"sh", 1).await.allowed);
    let d = shadow.decide(&ctx, b"sh", 1).await;
    assert!(d.allowed && d.shadowed);
    assert_eq!(shadow.snapshot().shadow_refused, 1);
    server.kill();
    for _ in 0..10 {
        assert!(allow.decide(&ctx, b"m", 1).await.allowed);
        let d = deny.decide(&ctx, b"m", 1).await;
        assert!(!d.allowed);
        assert!(d.retry_after > Duration::ZERO);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replies_and_bad_keys_fall_back_with_a_clear_error() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Allow))
        .await
        .unwrap();
    let ctx = Context::background();
    // A key of another type: Redis's own error.
    server.command(&[b"HSET", b"t:hash", b"a", b"b"]);
    let d = limiter.decide(&ctx, b"hash", 1).await;
    let Source::Fallback(Error::Redis(message)) = &d.source else {
        panic!("{d:?}")
    };
    assert!(message.contains("WRONGTYPE"), "{message}");
    // A key holding something that is not the script's state.
    server.command(&[b"SET", b"t:text", b"not a number"]);
    let d = limiter.decide(&ctx, b"text", 1).await;
    let Source::Fallback(Error::Redis(message)) = &d.source else {
        panic!("{d:?}")
    };
    assert!(message.contains("no rate-limit state"), "{message}");
    assert!(d.allowed, "the configured fallback decided");
    assert!(limiter.snapshot().errors >= 2);
    // A flushed script cache is recovered from.
    server.command(&[b"SCRIPT", b"FLUSH"]);
    assert_eq!(
        limiter.decide(&ctx, b"fresh", 1).await.source,
        Source::Redis
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_errors_are_clear() {
    let err = RedisRateLimiter::new(RedisLimitConfig::new(
        "http://nope",
        1,
        Duration::from_secs(1),
    ))
    .unwrap_err();
    assert!(matches!(err, Error::Url(_)), "{err}");
    let err = RedisRateLimiter::new(RedisLimitConfig::new(
        "redis://127.0.0.1:1",
        0,
        Duration::from_secs(1),
    ))
    .unwrap_err();
    assert!(
        matches!(err, Error::Config(ref e) if e.field() == "rate"),
        "{err}"
    );
    // Nothing listens there: unreachable, within the connect timeout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = RedisLimitConfig::new(
        format!("redis://127.0.0.1:{port}"),
        1,
        Duration::from_secs(1),
    );
    cfg.connect_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = RedisRateLimiter::connect(cfg).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_key_is_a_rate_limit() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(config(&server, 2, Duration::from_secs(60)))
        .await
        .unwrap();
    let limit: Box<dyn RateLimit> = Box::new(limiter.key("upstream"));
    let ctx = Context::background();
    assert!(limit.acquire(&ctx, 1).await.is_ok());
    assert!(limit.acquire(&ctx, 1).await.is_ok());
    let refused = limit.acquire(&ctx, 1).await.unwrap_err();
    assert!(refused.retry_after() > Duration::from_secs(1));
}

/// Many tasks deciding while Redis is killed and started again under them:
/// nothing panics, no decision waits longer than the bound, decisions fall back
/// while it is away and come from Redis again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_keep_flowing_while_redis_dies_and_returns_under_load() {
    let mut server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(fault_config(&server, FallbackMode::Local))
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let (limiter, stop, slowest) = (limiter.clone(), stop.clone(), slowest.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = Context::background();
            let (mut redis, mut fallback) = (0u32, 0u32);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 200_000 {
                n += 1;
                let started = Instant::now();
                let d = limiter.decide(&ctx, &[b'k', t], 1).await;
                let took = started.elapsed().as_micros() as u64;
                slowest.fetch_max(took, Ordering::Relaxed);
                match d.source {
                    Source::Redis | Source::RefusedCache => redis += 1,
                    _ => fallback += 1,
                }
                tokio::task::yield_now().await;
            }
            (redis, fallback)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();
    // Back on Redis within a bounded time (the breaker's open second and a probe).
    let started = Instant::now();
    let probe = Context::background();
    while limiter.decide(&probe, b"probe", 1).await.source != Source::Redis {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery: {:?}",
            limiter.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let redis_before = limiter.snapshot().allowed;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut redis, mut fallback) = (0, 0);
    for t in tasks {
        let (r, f) = t.await.expect("no task panicked");
        redis += r;
        fallback += f;
    }
    assert!(
        redis > 0 && fallback > 0,
        "redis {redis}, fallback {fallback}"
    );
    assert!(
        limiter.snapshot().allowed > redis_before,
        "decisions came from Redis again"
    );
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    assert!(slowest < BOUND, "a decision took {slowest:?}");
}
