//! The public types and futures that cross threads say so at compile time: a
//! change that makes one of them `!Send` or `!Sync` fails this file's build.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "retry", feature = "breaker", feature = "limit"))]

use std::io;

use palisade::{CallCounts, Context, Error, Pipeline, PipelineSnapshot, Report, WithFallback};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(value: T) -> T {
    value
}

#[test]
fn the_pipeline_its_error_and_its_snapshots_are_send_and_sync() {
    send_sync::<Pipeline>();
    send_sync::<Pipeline<palisade::classify::HttpStatus, palisade::clock::ManualClock>>();
    send_sync::<WithFallback<u16, io::Error>>();
    send_sync::<Error<io::Error>>();
    send_sync::<PipelineSnapshot>();
    send_sync::<CallCounts>();
    send_sync::<Context>();
    send_sync::<palisade::ConfigError>();
    send_sync::<palisade::breaker::Breaker>();
    send_sync::<palisade::limit::Bulkhead>();
    send_sync::<palisade::limit::RateLimiter>();
    send_sync::<palisade::retry::RetryPolicy>();
    send_sync::<Report<'static, io::Error>>();
}

/// Every named public future of the strategy crates, for the clock it runs on by
/// default: `Send`, so a task that awaits one can move between threads, and `Sync`
/// where it holds nothing but shared references and atomics.
#[test]
fn every_public_future_is_send() {
    use palisade::clock::{ManualSleep, TokioClock, TokioSleep};
    use std::future::Ready;
    type Call = Ready<Result<u8, io::Error>>;

    send_sync::<TokioSleep>();
    send_sync::<ManualSleep>();
    send_sync::<palisade::classify::CatchPanic<Call>>();
    send_sync::<palisade::context::Run<'static, Call>>();
    send_sync::<palisade::context::Timeout<'static, Call>>();
    send_sync::<palisade::context::Scope<Call>>();
    send_sync::<palisade::context::Spawned<u8>>();
    send_sync::<palisade::context::Cancelled<'static>>();
    send_sync::<
        palisade::breaker::Call<'static, TokioClock, palisade::classify::AnyErrorIsTransient, Call>,
    >();
    send_sync::<palisade::limit::bulkhead::Acquire<'static, TokioClock>>();
    send_sync::<palisade::limit::bulkhead::AcquireOwned<TokioClock>>();
    send_sync::<palisade::limit::bulkhead::AcquireMany<'static, TokioClock>>();
    send_sync::<palisade::limit::bulkhead::AcquireManyOwned<TokioClock>>();
    send_sync::<palisade::limit::rate::UntilReady<'static, TokioClock>>();
    send_sync::<palisade::limit::rate::UntilNReady<'static, TokioClock>>();
}

#[tokio::test]
async fn the_execute_futures_are_send() {
    let pipeline = Pipeline::builder("send").build().unwrap();
    let ctx = Context::background();
    let fut = send(pipeline.execute(&ctx, |_| async { Ok::<_, io::Error>(1) }));
    assert_eq!(fut.await.unwrap(), 1);
    let fut = send(pipeline.execute_once(&ctx, async { Ok::<_, io::Error>(2) }));
    assert_eq!(fut.await.unwrap(), 2);
    let fallback = pipeline.with_fallback(palisade::fallback::Fallback::builder().build());
    let fut = send(fallback.execute(&ctx, |_| async { Ok::<u8, io::Error>(3) }));
    assert_eq!(fut.await.unwrap(), 3);
}

#[cfg(feature = "health")]
#[test]
fn health_is_send_and_sync() {
    send_sync::<palisade::health::Health>();
    send_sync::<palisade::health::HealthReport>();
    send_sync::<palisade::health::HealthBuilder>();
}
