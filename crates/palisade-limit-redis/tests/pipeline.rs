#![allow(clippy::disallowed_methods)] // a test is the root: it spawns and reads the real clock.
//! A Redis rate limit where the local one goes: a `Pipeline`, its tower layer,
//! and a configuration file's `redis` section, against a real `redis-server`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::classify::Strategy;
use palisade::config::Registry;
use palisade::{Context, Pipeline};
use palisade_limit::{RateLimiter, RateLimiterConfig};
use palisade_limit_redis::{RedisLimitConfig, RedisRateLimiter};
use support::RedisServer;
use tower::{Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_takes_a_redis_limit() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(
        RedisLimitConfig::new(server.url(), 3, Duration::from_secs(60)).with_key_prefix("p:"),
    )
    .await
    .unwrap();
    let pipeline = Pipeline::builder("upstream")
        .rate_limit(limiter.key("upstream"))
        .attempt_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(pipeline.rate_limit().is_some());
    let calls = AtomicU32::new(0);
    let ctx = Context::background();
    for _ in 0..3 {
        let v = pipeline
            .execute(&ctx, |_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Ok::<_, std::io::Error>(7)
            })
            .await
            .unwrap();
        assert_eq!(v, 7);
    }
    let err = pipeline
        .execute(&ctx, |_| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(7)
        })
        .await
        .unwrap_err();
    assert_eq!(err.rejected_by(), Some(Strategy::RateLimiter));
    let retry = err.rejection().unwrap().retry_after().unwrap();
    assert!(
        retry > Duration::from_secs(10) && retry <= Duration::from_secs(20),
        "{retry:?}"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "a refused attempt never calls"
    );
    assert_eq!(limiter.snapshot().allowed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_takes_the_local_limiter_through_the_same_interface() {
    let local = RateLimiter::new(RateLimiterConfig::new(2, Duration::from_secs(60))).unwrap();
    let pipeline = Pipeline::builder("local")
        .rate_limit(local)
        .build()
        .unwrap();
    let ctx = Context::background();
    for _ in 0..2 {
        pipeline
            .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap();
    }
    let err = pipeline
        .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.rejected_by(), Some(Strategy::RateLimiter));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_takes_a_redis_limit() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::connect(
        RedisLimitConfig::new(server.url(), 2, Duration::from_secs(60)).with_key_prefix("t:"),
    )
    .await
    .unwrap();
    let hits = Arc::new(AtomicU32::new(0));
    let seen = hits.clone();
    let inner = tower::service_fn(move |n: u32| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(n + 1)
        }
    });
    let mut svc = tower::Layer::layer(&palisade::tower::rate_limit(limiter.key("svc")), inner);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 3);
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(err.rejected_by(), Some(Strategy::RateLimiter));
    assert_eq!(hits.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_takes_a_redis_section() {
    let server = RedisServer::start();
    let registry = Registry::from_toml(&format!(
        r#"
        [pipelines.billing]
        attempt_timeout = "1s"
        [pipelines.billing.redis]
        url = "{}"
        key_prefix = "{{billing}}:"
        rate = 2
        period = "1m"
        timeout = "200ms"
        "#,
        server.url()
    ))
    .unwrap();
    let billing = registry.pipeline("billing").unwrap();
    let ctx = Context::background();
    for _ in 0..2 {
        billing
            .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
            .await
            .unwrap();
    }
    let err = billing
        .execute(&ctx, |_| async { Ok::<_, std::io::Error>(()) })
        .await
        .unwrap_err();
    assert_eq!(err.rejected_by(), Some(Strategy::RateLimiter));
    // The key is the pipeline's name, under the prefix (with its hash tag).
    let ttl = String::from_utf8(server.command(&[b"PTTL", b"{billing}:billing"])).unwrap();
    assert!(ttl.starts_with(':') && !ttl.starts_with(":-"), "{ttl}");

    // A bad value is refused, naming the field.
    let err =
        Registry::from_toml("[pipelines.x.redis]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"0s\"")
            .unwrap_err();
    assert_eq!(err.field(), "pipelines.x.redis.timeout");
    let err = Registry::from_toml("[pipelines.x.redis]\nurl = \"ftp://h\"").unwrap_err();
    assert_eq!(err.field(), "pipelines.x.redis.url");
}
