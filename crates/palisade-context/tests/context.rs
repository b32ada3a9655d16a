//! The context tree, causes, deadlines, values, `run` and `timeout`, in virtual time.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use palisade_test::assert_no_live_tasks_now;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_clock::{Clock, TokioClock};
use palisade_context::{Cause, Context, timeout};

#[test]
fn background_never_ends() {
    let ctx = Context::background();
    assert!(!ctx.is_cancelled());
    assert!(ctx.cause().is_none());
    assert!(ctx.deadline().is_none() && ctx.remaining().is_none());
}

#[test]
fn parent_cancellation_reaches_descendants_and_not_the_other_way() {
    let (parent, parent_guard) = Context::background().with_cancel();
    let (child, child_guard) = parent.with_cancel();
    let (grandchild, _g) = child.with_cancel();
    let (sibling, _s) = parent.with_cancel();

    assert!(child_guard.cancel());
    assert!(!child_guard.cancel(), "a second cancel reports nothing new");
    assert!(child.is_cancelled() && grandchild.is_cancelled());
    assert!(!parent.is_cancelled() && !sibling.is_cancelled());

    parent_guard.cancel_with("shutting down");
    assert!(sibling.is_cancelled());
    assert_eq!(
        sibling.cause().unwrap().to_string(),
        "context canceled: shutting down"
    );
    // The grandchild keeps the cause it ended with first.
    assert_eq!(grandchild.cause().unwrap().to_string(), "context canceled");
}

#[test]
fn dropping_the_guard_cancels_and_detach_does_not() {
    let (ctx, guard) = Context::background().with_cancel();
    drop(guard);
    assert!(ctx.cause().unwrap().is_canceled());

    let (parent, parent_guard) = Context::background().with_cancel();
    let (ctx, guard) = parent.with_cancel();
    guard.detach();
    assert!(!ctx.is_cancelled());
    drop(parent_guard);
    assert!(
        ctx.is_cancelled(),
        "a detached child still ends with its parent"
    );
}

#[test]
fn a_child_of_a_cancelled_parent_is_born_cancelled() {
    let (parent, guard) = Context::background().with_cancel();
    guard.cancel_with_cause(Cause::user("gone"));
    let (child, _g) = parent.with_cancel();
    assert!(child.is_cancelled());
    assert_eq!(child.cause().unwrap().to_string(), "context canceled: gone");
}

#[test]
fn values_are_typed_and_shadowed() {
    #[derive(Debug, PartialEq)]
    struct RequestId(u64);
    #[derive(Debug, PartialEq)]
    struct Tenant(&'static str);

    let root = Context::background().with_value(RequestId(1));
    let (child, _g) = root.with_value(Tenant("a")).with_cancel();
    let shadowed = child.with_value(RequestId(2));
    assert_eq!(child.get::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(shadowed.get::<RequestId>(), Some(&RequestId(2)));
    assert_eq!(shadowed.get::<Tenant>(), Some(&Tenant("a")));
    assert_eq!(root.get::<Tenant>(), None);
    let text = format!("{shadowed:?}");
    assert!(
        text.contains("RequestId") && text.contains("Tenant"),
        "{text}"
    );
}

#[test]
fn without_cancel_keeps_values_only() {
    let (ctx, guard) = Context::background()
        .with_value(5u8)
        .with_timeout(Duration::from_secs(1));
    let detached = ctx.without_cancel();
    drop(guard);
    assert!(ctx.is_cancelled());
    assert!(!detached.is_cancelled());
    assert!(detached.deadline().is_none());
    assert_eq!(detached.get::<u8>(), Some(&5));
}

#[tokio::test(start_paused = true)]
async fn a_child_never_extends_its_parents_deadline() {
    let now = TokioClock.now();
    let (parent, _pg) = Context::background().with_timeout(Duration::from_secs(1));
    let (longer, _lg) = parent.with_timeout(Duration::from_secs(10));
    let (shorter, _sg) = parent.with_timeout(Duration::from_millis(200));
    let (plain, _g) = parent.with_cancel();
    assert_eq!(parent.deadline(), Some(now + Duration::from_secs(1)));
    assert_eq!(longer.deadline(), parent.deadline());
    assert_eq!(plain.deadline(), parent.deadline());
    assert_eq!(shorter.deadline(), Some(now + Duration::from_millis(200)));
    assert_eq!(shorter.remaining(), Some(Duration::from_millis(200)));
}

#[tokio::test(start_paused = true)]
async fn with_deadline_takes_a_timestamp_on_the_tokio_clock() {
    let start = TokioClock.now();
    let deadline = start + Duration::from_millis(1500);
    let (ctx, _g) = Context::background().with_deadline(deadline);
    assert_eq!(ctx.deadline(), Some(deadline));
    // A later deadline under it changes nothing; an earlier one applies.
    let (later, _lg) = ctx.with_deadline(deadline + Duration::from_secs(1));
    assert_eq!(later.deadline(), Some(deadline));
    let (past, _pg) = ctx.with_deadline(start - Duration::from_secs(1));
    assert!(past.is_cancelled());
    assert!(past.cause().unwrap().is_deadline_exceeded());
    assert!(!ctx.is_cancelled());
    ctx.cancelled().await;
    assert_eq!(TokioClock.now() - start, Duration::from_millis(1500));
    assert!(later.cause().unwrap().is_deadline_exceeded());
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn is_cancelled_sees_the_deadline_to_the_nanosecond() {
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(1));
    let (child, _cg) = ctx.with_cancel();
    // Far from the deadline the recent clock answers; near it the exact one does.
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(!ctx.is_cancelled());
    tokio::time::advance(Duration::from_millis(500) - Duration::from_nanos(1)).await;
    assert!(!ctx.is_cancelled());
    assert!(!child.is_cancelled());
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert!(ctx.is_cancelled());
    assert!(child.is_cancelled());
    assert!(ctx.cause().unwrap().is_deadline_exceeded());
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_shows_without_any_timer() {
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(1));
    let (child, _cg) = ctx.with_cancel();
    assert!(!child.is_cancelled());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(!child.is_cancelled());
    assert_eq!(child.remaining(), Some(Duration::from_millis(1)));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(child.remaining(), Some(Duration::ZERO));
    assert!(child.is_cancelled());
    assert!(child.cause().unwrap().is_deadline_exceeded());
    // Observing it on the child ended the context that set the deadline.
    assert!(ctx.cause().unwrap().is_deadline_exceeded());
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_wakes_on_the_deadline() {
    let start = TokioClock.now();
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(3));
    let (child, _cg) = ctx.with_cancel();
    let (a, b) = tokio::join!(ctx.cancelled(), child.cancelled());
    let _ = (a, b);
    assert_eq!(TokioClock.now() - start, Duration::from_secs(3));
    assert!(child.cause().unwrap().is_deadline_exceeded());
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn an_earlier_child_deadline_fires_first() {
    let start = TokioClock.now();
    let (parent, _pg) = Context::background().with_timeout(Duration::from_secs(3));
    let (child, _cg) = parent.with_timeout(Duration::from_secs(1));
    child.cancelled().await;
    assert_eq!(TokioClock.now() - start, Duration::from_secs(1));
    assert!(!parent.is_cancelled());
    parent.cancelled().await;
    assert_eq!(TokioClock.now() - start, Duration::from_secs(3));
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn the_timer_is_released_with_the_context() {
    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(60));
    {
        let mut waiting = Box::pin(ctx.cancelled());
        assert!(futures_poll(waiting.as_mut()).is_pending());
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 1, "one timer for the context");
    drop(guard);
    assert_no_live_tasks_now().await;
    drop(ctx);
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn explicit_cancel_wakes_waiters() {
    let (ctx, guard) = Context::background().with_cancel();
    let (child, _g) = ctx.with_cancel();
    let waiter = tokio::spawn(async move { child.cancelled().await });
    tokio::task::yield_now().await;
    guard.cancel();
    waiter.await.unwrap();
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn run_returns_output_or_cause() {
    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(1));
    assert_eq!(ctx.run(async { 7 }).await.unwrap(), 7);

    let dropped = Arc::new(AtomicUsize::new(0));
    let marker = DropMarker(dropped.clone());
    let cause = ctx
        .run(async move {
            let _m = marker;
            tokio::time::sleep(Duration::from_secs(5)).await;
        })
        .await
        .unwrap_err();
    assert!(cause.is_deadline_exceeded());
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the work was dropped");

    // An ended context does not start the work at all.
    let polled = Arc::new(AtomicUsize::new(0));
    let p = polled.clone();
    let err = ctx
        .run(async move { p.fetch_add(1, Ordering::SeqCst) })
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded());
    assert_eq!(polled.load(Ordering::SeqCst), 0);
    drop(guard);
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn run_stops_on_explicit_cancel() {
    let (ctx, guard) = Context::background().with_cancel();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        guard.cancel_with("stop");
    });
    let cause = ctx.run(std::future::pending::<()>()).await.unwrap_err();
    assert_eq!(cause.to_string(), "context canceled: stop");
    canceller.await.unwrap();
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn timeout_says_which_fired() {
    let start = TokioClock.now();
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(2));

    // The call's timeout is shorter.
    let err = timeout(
        &ctx,
        Duration::from_millis(500),
        std::future::pending::<()>(),
    )
    .await
    .unwrap_err();
    assert!(err.is_elapsed() && err.is_deadline_exceeded());
    assert_eq!(err.elapsed(), Some(Duration::from_millis(500)));
    assert_eq!(TokioClock.now() - start, Duration::from_millis(500));
    assert!(!ctx.is_cancelled());
    assert_eq!(err.to_string(), "timed out after 500ms");

    // The context's deadline is shorter.
    let err = timeout(&ctx, Duration::from_secs(10), std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(!err.is_elapsed() && err.is_deadline_exceeded());
    assert!(err.context_cause().unwrap().is_deadline_exceeded());
    assert_eq!(TokioClock.now() - start, Duration::from_secs(2));
    assert!(ctx.is_cancelled());

    // The future wins.
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(2));
    let out = timeout(&ctx, Duration::from_secs(1), async { "ok" }).await;
    assert_eq!(out.unwrap(), "ok");
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn timeout_stops_on_cancellation() {
    let (ctx, guard) = Context::background().with_cancel();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        guard.cancel();
    });
    let err = timeout(&ctx, Duration::from_secs(10), std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(!err.is_elapsed() && !err.is_deadline_exceeded());
    assert!(err.context_cause().unwrap().is_canceled());
    canceller.await.unwrap();
    // Under background, only the timeout applies.
    let err = timeout(
        &Context::background(),
        Duration::from_millis(1),
        std::future::pending::<()>(),
    )
    .await
    .unwrap_err();
    assert!(err.is_elapsed());
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn after_cancel_runs_once_or_not_at_all() {
    let count = Arc::new(AtomicUsize::new(0));
    let (ctx, guard) = Context::background().with_cancel();
    let c = count.clone();
    let _kept = ctx.after_cancel(move || {
        c.fetch_add(1, Ordering::SeqCst);
    });
    let c = count.clone();
    let stopped = ctx.after_cancel(move || {
        c.fetch_add(10, Ordering::SeqCst);
    });
    assert!(stopped.stop());
    guard.cancel();
    guard.cancel();
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Registered on an ended context: runs at once.
    let c = count.clone();
    let late = ctx.after_cancel(move || {
        c.fetch_add(100, Ordering::SeqCst);
    });
    assert_eq!(count.load(Ordering::SeqCst), 101);
    assert!(!late.stop());

    // On a deadline: the timer runs it.
    let (ctx, _g) = Context::background().with_timeout(Duration::from_secs(5));
    let c = count.clone();
    let _h = ctx.after_cancel(move || {
        c.fetch_add(1000, Ordering::SeqCst);
    });
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(count.load(Ordering::SeqCst), 1101);
    assert_no_live_tasks_now().await;
}

struct DropMarker(Arc<AtomicUsize>);

impl Drop for DropMarker {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn futures_poll<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

/// A guard dropped after every context of its node still ends what can see the end:
/// a registered callback whose handle is gone, and a child that outlives the parent's
/// context. A node that nothing could observe is dropped without ending.
#[test]
fn a_guard_dropped_last_still_ends_what_can_see_it() {
    let ran = Arc::new(AtomicUsize::new(0));
    let (ctx, guard) = Context::background().with_cancel();
    let flag = ran.clone();
    drop(ctx.after_cancel(move || {
        flag.fetch_add(1, Ordering::SeqCst);
    }));
    drop(ctx);
    drop(guard);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the callback did not run");

    let (ctx, guard) = Context::background().with_cancel();
    let (child, child_guard) = ctx.with_cancel();
    drop(ctx);
    drop(guard);
    assert!(child.is_cancelled(), "a lazy child missed its parent's end");
    assert!(child.cause().unwrap().is_canceled());
    drop(child_guard);

    let (ctx, guard) = Context::background().with_cancel();
    let (child, child_guard) = ctx.with_cancel();
    let mut wait = Box::pin(child.cancelled());
    assert!(futures_poll(wait.as_mut()).is_pending());
    drop(ctx);
    drop(guard);
    assert!(
        futures_poll(wait.as_mut()).is_ready(),
        "a waiter missed the end"
    );
    drop(wait);
    drop(child_guard);
}

/// A waiter on a lazy grandchild registers the whole chain, and the end of any link
/// wakes it.
#[test]
fn a_waiter_registers_a_lazy_chain() {
    for cut in 0..3 {
        let (root, root_guard) = Context::background().with_cancel();
        let (mid, mid_guard) = root.with_cancel();
        let (leaf, leaf_guard) = mid.with_cancel();
        let mut wait = Box::pin(leaf.cancelled());
        assert!(futures_poll(wait.as_mut()).is_pending());
        assert!(!leaf.is_cancelled());
        match cut {
            0 => drop(root_guard),
            1 => drop(mid_guard),
            _ => drop(leaf_guard),
        }
        assert!(
            futures_poll(wait.as_mut()).is_ready(),
            "link {cut} did not wake"
        );
        assert!(leaf.is_cancelled());
    }
}
