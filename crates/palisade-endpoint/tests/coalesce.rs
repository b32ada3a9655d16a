#![allow(clippy::disallowed_methods)] // a test is the root: it makes its own contexts and tasks
//! Request coalescing: one upstream call per key, shared outcomes, cancellation only when every caller has gone, a bounded key map.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::join_all;
use palisade_context::Context;
use palisade_endpoint::{Coalesce, CoalesceError};
use tokio::sync::Notify;

/// Polls `fut` once, from the test's task.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}

/// Counts calls that started, ended and were dropped before ending.
#[derive(Default)]
struct Upstream {
    started: AtomicUsize,
    finished: AtomicUsize,
    dropped: AtomicUsize,
    gate: Notify,
}

struct DropMark(Arc<Upstream>, bool);
impl Drop for DropMark {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn call(
    up: &Arc<Upstream>,
) -> impl FnOnce(Context) -> std::pin::Pin<Box<dyn Future<Output = Result<u64, String>> + Send>>
+ Send
+ 'static {
    let up = up.clone();
    move |_ctx| {
        Box::pin(async move {
            up.started.fetch_add(1, Ordering::SeqCst);
            let mut mark = DropMark(up.clone(), false);
            up.gate.notified().await;
            up.finished.fetch_add(1, Ordering::SeqCst);
            mark.1 = true;
            Ok(42)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_callers_make_one_upstream_call() {
    let up = Arc::new(Upstream::default());
    let c: Coalesce<&str, u64, String> = Coalesce::new();
    let ctx = Context::background();
    let calls: Vec<_> = (0..1000).map(|_| c.call(&ctx, "hot", call(&up))).collect();
    assert_eq!(calls.iter().filter(|c| !c.joined()).count(), 1);
    let gate = {
        let up = up.clone();
        async move {
            tokio::task::yield_now().await;
            up.gate.notify_one();
        }
    };
    let (results, ()) = tokio::join!(join_all(calls), gate);
    assert!(results.iter().all(|r| *r.as_ref().unwrap() == 42));
    assert_eq!(up.started.load(Ordering::SeqCst), 1);
    assert_eq!(up.finished.load(Ordering::SeqCst), 1);
    assert_eq!(c.in_flight(), 0, "the key is free once the flight ends");
    // The next call is a new flight.
    let next = c.call(&ctx, "hot", |_| async { Ok(7) }).await.unwrap();
    assert_eq!(next, 7);
}

#[tokio::test(start_paused = true)]
async fn cancelling_every_caller_cancels_the_upstream_call() {
    let up = Arc::new(Upstream::default());
    let c: Coalesce<&str, u64, String> = Coalesce::new();
    let ctx = Context::background();
    let seen = Arc::new(std::sync::Mutex::new(None::<Context>));
    let seen2 = seen.clone();
    let up2 = up.clone();
    let mut calls: Vec<_> = vec![c.call(&ctx, "k", move |flight_ctx| {
        *seen2.lock().unwrap() = Some(flight_ctx);
        call(&up2)(Context::background())
    })];
    calls.extend((0..99).map(|_| c.call(&ctx, "k", call(&up))));
    // Poll every caller once: the flight starts and waits on the gate.
    for call in &mut calls {
        assert!(poll_once(call).await.is_pending());
    }
    assert_eq!(up.started.load(Ordering::SeqCst), 1);
    let flight_ctx = seen.lock().unwrap().clone().unwrap();
    assert!(!flight_ctx.is_cancelled());
    drop(calls);
    assert_eq!(
        up.dropped.load(Ordering::SeqCst),
        1,
        "the upstream call was dropped"
    );
    assert!(flight_ctx.is_cancelled(), "and its context cancelled");
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_all_but_one_caller_lets_the_call_complete() {
    let up = Arc::new(Upstream::default());
    let c: Coalesce<&str, u64, String> = Coalesce::new();
    let ctx = Context::background();
    let mut calls: Vec<_> = (0..100).map(|_| c.call(&ctx, "k", call(&up))).collect();
    for call in &mut calls {
        assert!(poll_once(call).await.is_pending());
    }
    // Keep the last joiner; drop the leader and everyone else.
    let last = calls.pop().unwrap();
    assert!(last.joined());
    drop(calls);
    assert_eq!(up.dropped.load(Ordering::SeqCst), 0);
    up.gate.notify_one();
    assert_eq!(last.await.unwrap(), 42);
    assert_eq!(up.started.load(Ordering::SeqCst), 1);
    assert_eq!(up.finished.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_and_a_panic_reach_every_caller() {
    let c: Coalesce<&str, u64, String> = Coalesce::new();
    let ctx = Context::background();
    let a = c.call(&ctx, "e", |_| async {
        tokio::task::yield_now().await;
        Err("down".to_owned())
    });
    let b = c.call(&ctx, "e", |_| async { Ok(1) });
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap_err().failed().unwrap(), "down");
    assert_eq!(b.unwrap_err().failed().unwrap(), "down");

    let a = c.call(&ctx, "p", |_| async {
        tokio::task::yield_now().await;
        if true {
            panic!("boom");
        }
        Ok(1)
    });
    let b = c.call(&ctx, "p", |_| async { Ok(1) });
    let (a, b) = tokio::join!(a, b);
    for r in [a, b] {
        match r {
            Err(CoalesceError::Panicked(p)) => assert_eq!(p.message(), "boom"),
            other => panic!("expected the panic, got {other:?}"),
        }
    }
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_key_flood_stays_within_the_bound() {
    let up = Arc::new(Upstream::default());
    let c: Coalesce<u32, u64, String> = Coalesce::with_max_keys(8);
    let ctx = Context::background();
    let mut calls: Vec<_> = (0..100).map(|k| c.call(&ctx, k, call(&up))).collect();
    for call in &mut calls {
        assert!(poll_once(call).await.is_pending());
    }
    assert_eq!(c.in_flight(), 8, "the map holds at most max_keys");
    assert_eq!(
        up.started.load(Ordering::SeqCst),
        100,
        "the rest ran uncoalesced"
    );
    drop(calls);
    assert_eq!(c.in_flight(), 0);
}
