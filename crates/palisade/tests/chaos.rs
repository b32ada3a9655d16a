//! Chaos: injected latency, errors and outcomes, behind a run-time switch; and a
//! drop-safety suite: thousands of calls cancelled at random, panicking, slow and
//! hanging, through a full pipeline reloaded mid-run, leave nothing held.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts
#![cfg(all(feature = "chaos", feature = "retry", feature = "breaker"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use palisade::backoff::{Backoff, Jitter};
use palisade::breaker::{Breaker, BreakerConfig, State};
use palisade::chaos::Chaos;
use palisade::classify::Outcome;
use palisade::retry::RetryPolicy;
use palisade::{Context, Pipeline, TimeoutKind};

const MS: Duration = Duration::from_millis(1);

fn ok(
    calls: &Arc<AtomicU32>,
) -> impl FnMut(Context) -> std::future::Ready<Result<u32, std::io::Error>> + use<> {
    let calls = calls.clone();
    move |_| {
        calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(1))
    }
}

#[tokio::test(start_paused = true)]
async fn the_switch_turns_injection_on_and_off() {
    let chaos = Chaos::builder().error_rate(1.0).build().unwrap();
    let p = Pipeline::builder("dep")
        .chaos(chaos.clone())
        .build()
        .unwrap();
    let ctx = Context::background();
    let calls = Arc::new(AtomicU32::new(0));
    assert_eq!(p.execute(&ctx, ok(&calls)).await.unwrap(), 1);
    chaos.set_enabled(true);
    let e = p.execute(&ctx, ok(&calls)).await.unwrap_err();
    assert!(e.is_injected());
    assert_eq!(e.outcome(), Outcome::transient());
    // The injected error replaced the call.
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    chaos.set_enabled(false);
    assert_eq!(p.execute(&ctx, ok(&calls)).await.unwrap(), 1);
    assert_eq!(chaos.snapshot().failed, 1);
}

#[tokio::test(start_paused = true)]
async fn injected_latency_runs_inside_the_attempt_timeout() {
    let chaos = Chaos::builder()
        .latency(1.0, Duration::from_secs(1))
        .enabled(true)
        .build()
        .unwrap();
    let p = Pipeline::builder("dep")
        .attempt_timeout(100 * MS)
        .chaos(chaos)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let e = p
        .execute(&Context::background(), ok(&calls))
        .await
        .unwrap_err();
    assert_eq!(e.timeout_kind(), Some(TimeoutKind::Attempt));
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn injected_failures_are_retried_and_counted_by_the_breaker() {
    let chaos = Chaos::builder()
        .replace_outcome(1.0, Outcome::transient())
        .enabled(true)
        .build()
        .unwrap();
    let breaker = Breaker::new(
        BreakerConfig::default()
            .failure_rate_threshold(None)
            .consecutive_failures(Some(3)),
    )
    .unwrap();
    let backoff = Backoff::constant(MS)
        .jitter(Jitter::None)
        .max_attempts(3)
        .build()
        .unwrap();
    let p = Pipeline::builder("dep")
        .retry(RetryPolicy::builder().backoff(backoff).build().unwrap())
        .breaker(breaker.clone())
        .chaos(chaos.clone())
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    // Every attempt succeeds, but the strategies see transient failures: three
    // attempts, the last `Ok` returned, and the breaker open.
    let v = p.execute(&Context::background(), ok(&calls)).await.unwrap();
    assert_eq!((v, calls.load(Ordering::Relaxed)), (1, 3));
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(chaos.snapshot().replaced, 3);
}

#[test]
fn rates_out_of_range_are_refused_by_field() {
    let e = Chaos::builder().error_rate(1.5).build().unwrap_err();
    assert_eq!(e.field(), "chaos.error_rate");
    let e = Chaos::builder().latency(-0.1, MS).build().unwrap_err();
    assert_eq!(e.field(), "chaos.latency.rate");
}

#[tokio::test(start_paused = true)]
async fn a_rate_injects_about_that_share_reproducibly() {
    let draws = || async {
        let chaos = Chaos::builder()
            .error_rate(0.25)
            .seed(42)
            .enabled(true)
            .build()
            .unwrap();
        let p = Pipeline::builder("dep")
            .chaos(chaos.clone())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        for _ in 0..1000 {
            let _ = p.execute(&Context::background(), ok(&calls)).await;
        }
        chaos.snapshot().failed
    };
    let first = draws().await;
    assert_eq!(first, draws().await, "the same seed, the same draws");
    assert!(
        (150..350).contains(&first),
        "{first} of 1000 at a rate of 0.25"
    );
}

/// Thousands of calls through a full pipeline (total and attempt timeouts, retry
/// with a budget and hedging, breaker, bulkhead with a queue, rate limiter),
/// each one slow, hanging, failing or panicking, each cancelled at random (its
/// future dropped after some polls, its task aborted, its runtime shut down),
/// with a hot reload in the middle. At the end every bulkhead permit, probe slot,
/// budget and registered context is back to zero, and no task is alive.
///
/// Deterministic from a seed: `PALISADE_CHAOS_SEED=<n>` replays a run, and a
/// failing run prints its seed.
#[cfg(all(feature = "config", feature = "testing", feature = "limit"))]
mod drop_safety {
    use std::future::{Future, poll_fn};
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::task::Poll;
    use std::time::Duration;

    use palisade::Context;
    use palisade::config::{NamedPipeline, Registry};
    use palisade::testing::{LeakCheck, LeakCheckExt, assert_no_live_tasks};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    const MS: Duration = Duration::from_millis(1);
    const CALLS: u32 = 3_000;
    /// The panics this suite plants: kept off the output.
    const PLANTED: &str = "chaos: planted panic";

    const CONFIG: &str = r#"
[pipelines.dep]
total_timeout = "2s"
attempt_timeout = "300ms"
[pipelines.dep.retry]
[pipelines.dep.retry.backoff]
kind = "exponential"
initial = "10ms"
max_attempts = 3
[pipelines.dep.retry.budget]
window = "2s"
retry_ratio = 0.5
[pipelines.dep.retry.hedging]
delay = "40ms"
max_hedges = 1
[pipelines.dep.breaker]
failure_rate_threshold = 60.0
minimum_calls = 20
open = { kind = "fixed", duration = "200ms" }
[pipelines.dep.bulkhead]
max_concurrent = 16
max_queue = 32
max_wait = "50ms"
"#;

    /// The same pipeline with other numbers: a reload keeps the breaker and the
    /// bulkhead (reconfigured in place) and rebuilds the retry policy.
    const RELOADED: &str = r#"
[pipelines.dep]
total_timeout = "1500ms"
attempt_timeout = "200ms"
[pipelines.dep.retry]
[pipelines.dep.retry.backoff]
kind = "constant"
initial = "5ms"
max_attempts = 2
[pipelines.dep.retry.budget]
window = "2s"
retry_ratio = 0.2
[pipelines.dep.retry.hedging]
delay = "20ms"
max_hedges = 2
[pipelines.dep.breaker]
failure_rate_threshold = 50.0
minimum_calls = 10
open = { kind = "fixed", duration = "100ms" }
[pipelines.dep.bulkhead]
max_concurrent = 8
max_queue = 8
max_wait = "20ms"
"#;

    fn seed() -> u64 {
        match std::env::var("PALISADE_CHAOS_SEED") {
            Ok(s) => s.parse().expect("PALISADE_CHAOS_SEED is an integer"),
            Err(_) => 0x00c0_ffee,
        }
    }

    /// Prints the seed if the test fails while it lives.
    struct SeedOnFailure(u64);

    impl Drop for SeedOnFailure {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!(
                    "chaos: failed with seed {0}; replay with PALISADE_CHAOS_SEED={0}",
                    self.0
                );
            }
        }
    }

    /// Keeps the planted panics off the output; every other panic is reported
    /// by the hook that was installed.
    fn quiet_planted_panics() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let payload = info.payload();
                let planted = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .is_some_and(|m| m.starts_with(PLANTED));
                if !planted {
                    previous(info);
                }
            }));
        });
    }

    /// What one call's closure does on each attempt.
    #[derive(Copy, Clone, Debug)]
    enum Behaviour {
        Ok,
        Slow(Duration),
        Hang,
        Fail,
        /// The attempt's future panics after a first wait.
        PanicInFuture,
        /// The closure panics before it makes a future.
        PanicInClosure,
    }

    /// How a call is cancelled.
    #[derive(Copy, Clone, Debug)]
    enum Cancel {
        None,
        /// Its future is dropped after this many polls.
        DropAfter(u32),
        /// Its task is aborted after this long.
        Abort(Duration),
        /// The caller's context is cancelled after this long.
        Context(Duration),
    }

    fn behaviour(rng: &mut SmallRng) -> Behaviour {
        match rng.random_range(0..100) {
            0..40 => Behaviour::Ok,
            40..60 => Behaviour::Slow(rng.random_range(1..400) * MS),
            60..68 => Behaviour::Hang,
            68..86 => Behaviour::Fail,
            86..93 => Behaviour::PanicInFuture,
            _ => Behaviour::PanicInClosure,
        }
    }

    fn cancel(rng: &mut SmallRng) -> Cancel {
        match rng.random_range(0..100) {
            0..40 => Cancel::None,
            40..70 => Cancel::DropAfter(rng.random_range(0..6)),
            70..85 => Cancel::Abort(rng.random_range(0..500) * MS),
            _ => Cancel::Context(rng.random_range(0..500) * MS),
        }
    }

    /// Runs one call as `behaviour` says, under `parent`.
    async fn call(
        pipeline: NamedPipeline,
        parent: Context,
        behaviour: Behaviour,
        attempts: Arc<AtomicU32>,
    ) {
        let _ = pipeline
            .execute(&parent, move |_ctx| {
                attempts.fetch_add(1, Ordering::Relaxed);
                if let Behaviour::PanicInClosure = behaviour {
                    panic!("{PLANTED} in a closure");
                }
                async move {
                    match behaviour {
                        Behaviour::Ok | Behaviour::PanicInClosure => Ok(1),
                        Behaviour::Slow(d) => {
                            tokio::time::sleep(d).await;
                            Ok(2)
                        }
                        Behaviour::Hang => std::future::pending().await,
                        Behaviour::Fail => {
                            tokio::time::sleep(5 * MS).await;
                            Err(std::io::Error::other("down"))
                        }
                        Behaviour::PanicInFuture => {
                            tokio::time::sleep(MS).await;
                            panic!("{PLANTED} in a future");
                        }
                    }
                }
            })
            .await;
    }

    /// Polls `fut` at most `polls` times (each after it woke), then drops it.
    async fn drop_after<F: Future>(fut: F, polls: u32) {
        let mut fut = pin!(fut);
        let mut n = 0;
        poll_fn(|cx| {
            if n == polls {
                return Poll::Ready(());
            }
            n += 1;
            fut.as_mut().poll(cx).map(drop)
        })
        .await;
    }

    /// Starts `calls` calls at random times over the next five seconds, each
    /// with a random behaviour and cancellation; returns their tasks.
    fn start_calls(
        rng: &mut SmallRng,
        pipeline: &NamedPipeline,
        root: &Context,
        calls: u32,
        attempts: &Arc<AtomicU32>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for _ in 0..calls {
            let start = rng.random_range(0..5_000) * MS;
            let (behaviour, cancel) = (behaviour(rng), cancel(rng));
            let (pipeline, root, attempts) = (pipeline.clone(), root.clone(), attempts.clone());
            let task = tokio::spawn(async move {
                tokio::time::sleep(start).await;
                match cancel {
                    Cancel::None | Cancel::Abort(_) => {
                        call(pipeline, root, behaviour, attempts).await
                    }
                    Cancel::DropAfter(polls) => {
                        drop_after(call(pipeline, root, behaviour, attempts), polls).await
                    }
                    Cancel::Context(after) => {
                        let (ctx, guard) = root.with_cancel();
                        let stop = async move {
                            tokio::time::sleep(after).await;
                            drop(guard);
                        };
                        let run = call(pipeline, ctx, behaviour, attempts);
                        // Whichever ends first: the call, or its cancellation
                        // (after which the call ends on its own, soon).
                        let (run, stop) = (pin!(run), pin!(stop));
                        let mut stop = Some(stop);
                        let mut run = run;
                        poll_fn(|cx| {
                            if let Some(s) = stop.as_mut() {
                                if s.as_mut().poll(cx).is_ready() {
                                    stop = None;
                                }
                            }
                            run.as_mut().poll(cx)
                        })
                        .await
                    }
                }
            });
            if let Cancel::Abort(after) = cancel {
                let abort = task.abort_handle();
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(start + after).await;
                    abort.abort();
                }));
            }
            tasks.push(task);
        }
        tasks
    }

    fn leaks(named: &NamedPipeline, root: &Context) -> LeakCheck {
        LeakCheck::new().watch("dep", named).watch("root", root)
    }

    #[tokio::test(start_paused = true)]
    async fn random_cancellation_panics_and_a_reload_leave_nothing_held() {
        let seed = seed();
        let _report = SeedOnFailure(seed);
        quiet_planted_panics();
        let mut rng = SmallRng::seed_from_u64(seed);

        let registry = Registry::from_toml(CONFIG).unwrap();
        let named = registry.pipeline("dep").unwrap();
        let (root, _root_guard) = Context::background().with_cancel();
        let before_reload = named.current();
        let attempts = Arc::new(AtomicU32::new(0));

        let mut tasks = start_calls(&mut rng, &named, &root, CALLS / 2, &attempts);
        // The reload lands while the first half is in flight.
        tokio::time::sleep(rng.random_range(1_500..3_500) * MS).await;
        registry.reload_toml(RELOADED).unwrap();
        tasks.extend(start_calls(&mut rng, &named, &root, CALLS / 2, &attempts));

        let mut panicked = 0;
        let mut aborted = 0;
        for task in tasks {
            match task.await {
                Err(e) if e.is_panic() => panicked += 1,
                Err(e) if e.is_cancelled() => aborted += 1,
                Err(e) => panic!("{e}"),
                Ok(()) => {}
            }
        }
        // A panic in a call's future or in its closure is caught by the
        // pipeline: it never reaches the caller's task.
        assert_eq!(panicked, 0);
        // The run did what it says: calls were aborted, attempts were made,
        // hedges started, and the breaker opened and closed again.
        println!(
            "chaos: seed {seed}: {CALLS} calls, {} attempts, {aborted} aborted, breaker generation {}",
            attempts.load(Ordering::Relaxed),
            named.snapshot().breaker.map_or(0, |b| b.generation),
        );
        assert!(aborted > 0, "no call was aborted");
        assert!(attempts.load(Ordering::Relaxed) > CALLS / 4, "few attempts");
        let hedges = before_reload.retry_policy().unwrap().snapshot().hedges
            + named.current().retry_policy().unwrap().snapshot().hedges;
        assert!(hedges > 0, "no hedge started");
        assert!(
            named.snapshot().breaker.unwrap().generation > 2,
            "the breaker never went round its states"
        );

        let leaks = leaks(&named, &root).watch("dep before the reload", &*before_reload);
        leaks.assert_released().await;
        assert_no_live_tasks().await;
        // The budgets' windows empty once their time has passed.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for p in [&before_reload, &named.current()] {
            let budget = p.retry_policy().unwrap().budget().unwrap().snapshot();
            assert_eq!(
                (budget.deposits(), budget.withdrawals()),
                (0, 0),
                "{budget:?}"
            );
        }
    }

    /// Calls in flight on a runtime that shuts down: their tasks are dropped
    /// where they stand, and what they held is released.
    #[test]
    fn a_runtime_shut_down_under_load_leaves_nothing_held() {
        let seed = seed();
        let _report = SeedOnFailure(seed);
        quiet_planted_panics();
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5a5a);
        let registry = Registry::from_toml(CONFIG).unwrap();
        let named = registry.pipeline("dep").unwrap();
        let (root, _root_guard) = Context::background().with_cancel();
        let attempts = Arc::new(AtomicU32::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let in_flight = runtime.block_on(async {
            let tasks = start_calls(&mut rng, &named, &root, 500, &attempts);
            tokio::time::sleep(rng.random_range(100..1_000) * MS).await;
            // Shut down at a moment when something is held.
            let mut held = leaks(&named, &root).check();
            for _ in 0..1_000 {
                if held.is_err() {
                    break;
                }
                tokio::time::sleep(MS).await;
                held = leaks(&named, &root).check();
            }
            drop(tasks);
            held
        });
        assert!(in_flight.is_err(), "nothing was in flight at the shutdown");
        drop(runtime);
        if let Err(e) = leaks(&named, &root).check() {
            panic!("after the shutdown: {e}");
        }
    }
}
