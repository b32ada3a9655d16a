//! Tests that look inside the tree: registry sizes, listeners, timers.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks, timers and contexts

use palisade_test::assert_no_live_tasks_now;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::{Context, spawn};

fn children(ctx: &Context) -> usize {
    ctx.node().map_or(0, |node| node.children_len())
}

fn listeners(ctx: &Context) -> usize {
    ctx.node().map_or(0, |node| node.listeners_len())
}

#[test]
fn a_million_children_leave_the_parent_as_it_was() {
    let (parent, _guard) = Context::background().with_cancel();
    for i in 0..1_000_000u32 {
        let (child, guard) = parent.with_cancel();
        if i % 2 == 0 {
            // Detached: unregisters when its last handle goes.
            guard.detach();
        } else {
            drop(guard);
        }
        drop(child);
    }
    assert_eq!(children(&parent), 0);
    let node = parent.node().unwrap();
    assert!(!node.is_marked());
}

#[test]
fn live_children_are_registered_and_value_contexts_are_not() {
    let (parent, _guard) = Context::background().with_cancel();
    let with_value = parent.with_value(1u8);
    assert_eq!(children(&parent), 0, "a value does not make a child");
    // A child that keeps the parent's deadline is lazy: it registers only once
    // something waits on it.
    let kept: Vec<_> = (0..10).map(|_| with_value.with_cancel()).collect();
    assert_eq!(children(&parent), 0);
    let waker = Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for (child, _) in &kept {
        assert!(
            Box::pin(child.cancelled())
                .as_mut()
                .poll(&mut cx)
                .is_pending()
        );
    }
    assert_eq!(children(&parent), 10);
    // A child with an earlier deadline registers at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let early = parent.with_timeout(Duration::from_secs(60));
    assert_eq!(children(&parent), 11);
    drop((kept, early));
    assert_eq!(children(&parent), 0);
    // Without cancellation: nothing registers with the parent at all.
    let (_free, _g) = parent.without_cancel().with_cancel();
    assert_eq!(children(&parent), 0);
}

#[test]
fn cancelling_ten_thousand_descendants_wakes_them_all() {
    let (root, guard) = Context::background().with_cancel();
    let woken = std::sync::Arc::new(AtomicUsize::new(0));
    let mut leaves = Vec::new();
    // 100 children with 100 children each: 10 100 descendants.
    for _ in 0..100 {
        let (child, child_guard) = root.with_cancel();
        child_guard.detach();
        for _ in 0..100 {
            let (leaf, leaf_guard) = child.with_cancel();
            leaf_guard.detach();
            leaves.push(leaf);
        }
    }
    let waker = counting_waker(woken.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut waits: Vec<_> = leaves
        .iter()
        .map(|leaf| Box::pin(leaf.cancelled()))
        .collect();
    for wait in &mut waits {
        assert!(wait.as_mut().poll(&mut cx).is_pending());
    }
    assert!(leaves.iter().all(|leaf| listeners(leaf) == 1));
    guard.cancel();
    assert_eq!(woken.load(Ordering::SeqCst), 10_000);
    for wait in &mut waits {
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(()));
    }
    assert!(leaves.iter().all(|leaf| leaf.is_cancelled()));
}

#[test]
fn a_waited_on_chain_registers_once_and_unregisters() {
    let (root, _root_guard) = Context::background().with_cancel();
    let (mid, mid_guard) = root.with_cancel();
    let (leaf, leaf_guard) = mid.with_cancel();
    let mut cx = std::task::Context::from_waker(Waker::noop());
    let mut first = Box::pin(leaf.cancelled());
    let mut second = Box::pin(leaf.cancelled());
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert_eq!((children(&root), children(&mid)), (1, 1));
    assert_eq!(listeners(&leaf), 2);
    drop((first, second));
    assert_eq!(listeners(&leaf), 0);
    drop((leaf, leaf_guard));
    assert_eq!(children(&mid), 0);
    drop((mid, mid_guard));
    assert_eq!(children(&root), 0);
    assert!(!root.is_cancelled());
}

#[test]
fn a_dropped_waiter_unregisters() {
    let (ctx, _guard) = Context::background().with_cancel();
    let waker = Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    {
        let mut a = Box::pin(ctx.cancelled());
        let mut b = Box::pin(ctx.cancelled());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        // Polling again with the same waker registers nothing new.
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert_eq!(listeners(&ctx), 2);
    }
    assert_eq!(listeners(&ctx), 0);
    {
        let mut run = Box::pin(ctx.run(std::future::pending::<()>()));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        assert_eq!(listeners(&ctx), 1);
    }
    assert_eq!(listeners(&ctx), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_futures_at_any_await_point_releases_everything() {
    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(10));
    let waker = Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    {
        let mut call = Box::pin(crate::timeout(
            &ctx,
            Duration::from_secs(1),
            std::future::pending::<()>(),
        ));
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(listeners(&ctx), 1);
    }
    assert_eq!(listeners(&ctx), 0);
    {
        let mut run = Box::pin(ctx.run(tokio::time::sleep(Duration::from_secs(60))));
        assert!(run.as_mut().poll(&mut cx).is_pending());
        assert_eq!(listeners(&ctx), 1);
    }
    assert_eq!(listeners(&ctx), 0);
    // Only the context's timer remains, and it goes with the context.
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 1);
    drop((ctx, guard));
    assert_no_live_tasks_now().await;
}

#[test]
fn a_deep_chain_cancels_without_recursion() {
    let (root, guard) = Context::background().with_cancel();
    let mut chain = vec![root];
    for _ in 0..1_000 {
        let (next, next_guard) = chain.last().unwrap().with_cancel();
        next_guard.detach();
        chain.push(next);
    }
    guard.cancel();
    assert!(chain.iter().all(Context::is_cancelled));
}

#[test]
fn a_panicking_callback_does_not_stop_the_cancellation() {
    let (ctx, guard) = Context::background().with_cancel();
    let (child, child_guard) = ctx.with_cancel();
    child_guard.detach();
    let _h = ctx.after_cancel(|| panic!("callback failed"));
    let ran = std::sync::Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let _h2 = ctx.after_cancel(move || {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard.cancel()));
    assert!(result.is_err(), "the panic is raised again");
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(child.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn one_timer_per_deadline_whatever_the_waiters() {
    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(10));
    let (child, child_guard) = ctx.with_cancel();
    let (value_child, value_guard) = child.with_value(1u8).with_cancel();
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 0, "no timer before anyone waits");
    let waker = Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut waits = vec![
        Box::pin(ctx.cancelled()),
        Box::pin(ctx.cancelled()),
        Box::pin(child.cancelled()),
        Box::pin(value_child.cancelled()),
    ];
    for wait in &mut waits {
        assert!(wait.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(
        metrics.num_alive_tasks(),
        1,
        "children share their ancestor's timer"
    );
    drop(waits);
    drop((child, child_guard, value_child, value_guard));
    drop(guard);
    drop(ctx);
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn spawned_tasks_carry_the_context_and_stop_with_it() {
    #[derive(Debug, PartialEq)]
    struct Tenant(&'static str);
    let tracker = crate::Tracker::new();
    let ctx = Context::background()
        .with_value(tracker.clone())
        .with_value(Tenant("a"));
    let (ctx, guard) = ctx.with_timeout(Duration::from_secs(1));

    let seen = spawn(&ctx, async {
        crate::current().get::<Tenant>().map(|t| t.0)
    });
    assert_eq!(seen.await.unwrap(), Some("a"));

    let stopped = std::sync::Arc::new(AtomicUsize::new(0));
    let s = stopped.clone();
    let slow = spawn(&ctx, async move {
        let _on_drop = OnDrop(s);
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    assert_eq!(tracker.len(), 1);
    let err = slow.await.unwrap_err();
    assert!(err.cause().unwrap().is_deadline_exceeded());
    assert_eq!(stopped.load(Ordering::SeqCst), 1);
    tracker.wait().await;
    assert!(tracker.is_empty() && tracker.is_closed());
    drop((ctx, guard));
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_and_waits_for_every_task() {
    let tracker = crate::Tracker::new();
    let ctx = Context::background().with_value(tracker.clone());
    let handles: Vec<_> = (0..5)
        .map(|_| spawn(&ctx, std::future::pending::<()>()))
        .collect();
    let finishing = spawn(&ctx, tokio::time::sleep(Duration::from_millis(5)));
    assert_eq!(tracker.len(), 6);
    tracker.shutdown().await;
    assert!(tracker.is_empty());
    for handle in handles {
        assert!(handle.await.unwrap_err().cause().unwrap().is_canceled());
    }
    assert!(finishing.await.is_err());
    assert_no_live_tasks_now().await;
}

#[tokio::test(start_paused = true)]
async fn wait_lets_tasks_finish() {
    let tracker = crate::Tracker::new();
    let ctx = Context::background().with_value(tracker.clone());
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    for i in 0..3u64 {
        let done = done.clone();
        drop(spawn(&ctx, async move {
            tokio::time::sleep(Duration::from_millis(10 * i)).await;
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    tracker.wait().await;
    assert_eq!(done.load(Ordering::SeqCst), 3);
    assert_no_live_tasks_now().await;
}

#[tokio::test]
async fn spawned_tasks_carry_the_span() {
    let subscriber = tracing_subscriber::registry();
    let _default = tracing::subscriber::set_default(subscriber);
    let span = tracing::info_span!("request");
    let id = span.id();
    let handle = {
        let _entered = span.enter();
        spawn(&Context::background(), async {
            tracing::Span::current().id()
        })
    };
    // With a subscriber that records spans, the task runs inside the caller's span.
    assert!(id.is_some());
    assert_eq!(handle.await.unwrap(), id);
}

#[tokio::test]
async fn a_panicking_task_reports_the_panic() {
    let tracker = crate::Tracker::new();
    let handle = tracker.spawn(&Context::background(), async { panic!("boom") });
    let err = handle.await.unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.to_string(), "task panicked: boom");
    tracker.wait().await;
}

#[cfg(feature = "tokio-util")]
#[tokio::test(start_paused = true)]
async fn cancellation_tokens_convert_both_ways() {
    use tokio_util::sync::CancellationToken;

    let (ctx, guard) = Context::background().with_timeout(Duration::from_secs(1));
    let token = CancellationToken::from(&ctx);
    token.cancelled().await;
    assert!(ctx.cause().unwrap().is_deadline_exceeded());
    drop(guard);

    let token = CancellationToken::new();
    let ctx = Context::from(token.clone());
    let (child, _g) = ctx.with_cancel();
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        1
    );
    token.cancel();
    child.cancelled().await;
    assert!(child.cause().unwrap().is_canceled());
    assert_no_live_tasks_now().await;

    // The watcher ends with its context.
    let token = CancellationToken::new();
    let (ctx, guard) = Context::background().with_cancellation_token(token.clone());
    drop((ctx, guard));
    assert_no_live_tasks_now().await;
    assert!(!token.is_cancelled());
}

struct OnDrop(std::sync::Arc<AtomicUsize>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker(count: std::sync::Arc<AtomicUsize>) -> Waker {
    struct Count(std::sync::Arc<AtomicUsize>);
    impl std::task::Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    Waker::from(std::sync::Arc::new(Count(count)))
}

#[tokio::test(start_paused = true)]
async fn a_deadline_with_a_reason_ends_its_context_with_that_reason() {
    use crate::Abandoned;
    use palisade_clock::{Clock, TokioClock};
    let deadline = TokioClock.now().saturating_add(Duration::from_millis(100));
    let (parent, _parent_guard) = Context::background().with_cancel();
    let (attempt, _guard) = parent.with_deadline_reason(deadline, Abandoned::TotalTimeout);
    let (inner, _inner_guard) = attempt.with_cancel();
    inner.cancelled().await;
    assert_eq!(
        attempt.cause().unwrap().abandoned_by(),
        Some(Abandoned::TotalTimeout)
    );
    assert_eq!(
        inner.cause().unwrap().abandoned_by(),
        Some(Abandoned::TotalTimeout)
    );
    assert!(!parent.is_cancelled());

    // Seen by a check rather than a timer, the passed deadline gives the same cause.
    let deadline = TokioClock.now().saturating_add(Duration::from_millis(100));
    let (checked, _guard) =
        Context::background().with_deadline_reason(deadline, Abandoned::AttemptTimeout);
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(checked.is_cancelled());
    assert_eq!(
        checked.cause().unwrap().abandoned_by(),
        Some(Abandoned::AttemptTimeout)
    );
}

#[test]
fn a_context_cancelled_as_abandoned_keeps_that_cause_for_its_descendants() {
    use crate::{Abandoned, Cause};
    let (attempt, guard) = Context::background().with_cancel();
    let (lazy, _lazy_guard) = attempt.with_cancel();
    let (watched, _watched_guard) = attempt.with_cancel();
    let _callback = watched.after_cancel(|| {});
    assert!(guard.cancel_with_cause(Cause::abandoned(Abandoned::HedgeLost)));
    for ctx in [&attempt, &lazy, &watched] {
        let cause = ctx.cause().unwrap();
        assert_eq!(cause.abandoned_by(), Some(Abandoned::HedgeLost));
        assert!(cause.is_canceled());
    }
}

mod capped {
    use super::*;
    use crate::{Abandoned, Cause, timeout};
    use palisade_clock::{Clock, TokioClock};

    fn after(ms: u64) -> palisade_clock::Timestamp {
        TokioClock.now().saturating_add(Duration::from_millis(ms))
    }

    /// `remaining` is `ms` but for the cap's rounding: at most 3 ns less.
    #[track_caller]
    fn about(remaining: Option<Duration>, ms: u64) {
        let want = Duration::from_millis(ms);
        let got = remaining.expect("a deadline");
        assert!(
            got <= want && want - got <= Duration::from_nanos(3),
            "{got:?} is not {want:?} (to 3 ns below)"
        );
    }

    #[test]
    fn a_capped_context_is_as_small_as_three_words() {
        assert_eq!(
            std::mem::size_of::<Context>(),
            3 * std::mem::size_of::<usize>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cap_ends_the_view_with_its_reason_and_not_the_context_it_came_from() {
        let (parent, _guard) = Context::background().with_timeout(Duration::from_secs(1));
        let attempt = parent.capped(after(100), Abandoned::AttemptTimeout);
        about(attempt.remaining(), 100);
        assert_eq!(children(&parent), 0, "a cap registers nowhere");
        assert!(!attempt.is_cancelled());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(attempt.is_cancelled());
        let cause = attempt.cause().unwrap();
        assert_eq!(cause.abandoned_by(), Some(Abandoned::AttemptTimeout));
        assert!(cause.is_deadline_exceeded());
        assert!(!parent.is_cancelled());
        assert_eq!(attempt.remaining(), Some(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cap_later_than_the_deadline_changes_nothing() {
        let (parent, _guard) = Context::background().with_timeout(Duration::from_millis(50));
        let attempt = parent.capped(after(100), Abandoned::TotalTimeout);
        about(attempt.remaining(), 50);
        attempt.cancelled().await;
        assert_eq!(TokioClock.now(), parent.deadline().unwrap());
        let cause = attempt.cause().unwrap();
        assert!(cause.is_deadline_exceeded());
        assert_eq!(
            cause.abandoned_by(),
            None,
            "the parent's deadline came first"
        );
        // The earlier of two caps holds.
        let twice = Context::background()
            .capped(after(10), Abandoned::AttemptTimeout)
            .capped(after(20), Abandoned::TotalTimeout);
        about(twice.remaining(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_capped_view_ends_with_its_parent_and_keeps_the_parents_cause() {
        let (parent, guard) = Context::background().with_cancel();
        let attempt = parent.capped(after(100), Abandoned::AttemptTimeout);
        let waiting = tokio::spawn({
            let attempt = attempt.clone();
            async move { attempt.cancelled().await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            children(&parent),
            1,
            "the waiter stands for the cap in the parent"
        );
        guard.cancel_with_cause(Cause::canceled());
        waiting.await.unwrap();
        assert!(attempt.cause().unwrap().is_canceled());
        // Past the cap, a cancellation that was not a deadline still says so.
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(attempt.cause().unwrap().is_canceled());
        assert_eq!(children(&parent), 0, "the waiter's node is gone with it");
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_on_a_cap_wakes_at_it_and_a_dropped_wait_unregisters() {
        let (parent, _guard) = Context::background().with_cancel();
        let attempt = parent.capped(after(100), Abandoned::TotalTimeout);
        {
            let waker = Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut wait = Box::pin(attempt.cancelled());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert_eq!(children(&parent), 1);
        }
        assert_eq!(children(&parent), 0, "dropping the wait dropped its node");
        let started = TokioClock.now();
        attempt.cancelled().await;
        about(Some(TokioClock.now() - started), 100);
        assert_eq!(
            attempt.cause().unwrap().abandoned_by(),
            Some(Abandoned::TotalTimeout)
        );
        // Polled after the cap, it is ready at once and makes no node.
        let waker = Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(
            Box::pin(attempt.cancelled())
                .as_mut()
                .poll(&mut cx)
                .is_ready()
        );
        assert_eq!(children(&parent), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn children_runs_callbacks_and_tasks_of_a_capped_view_end_at_the_cap() {
        let attempt = Context::background().capped(after(100), Abandoned::AttemptTimeout);
        let (child, _child_guard) = attempt.with_timeout(Duration::from_secs(5));
        about(child.remaining(), 100);
        let ran = std::sync::Arc::new(AtomicUsize::new(0));
        let flag = ran.clone();
        // Dropping the handle does not stop the callback.
        drop(attempt.after_cancel(move || {
            flag.fetch_add(1, Ordering::SeqCst);
        }));
        let flag = ran.clone();
        let stopped = attempt.after_cancel(move || {
            flag.fetch_add(10, Ordering::SeqCst);
        });
        assert!(stopped.stop());
        let task = spawn(&attempt, std::future::pending::<()>());
        let run = attempt.run(std::future::pending::<()>());
        let ran_out = timeout(
            &attempt,
            Duration::from_secs(5),
            std::future::pending::<()>(),
        );
        let (run, ran_out) = tokio::join!(run, ran_out);
        assert_eq!(
            run.unwrap_err().abandoned_by(),
            Some(Abandoned::AttemptTimeout)
        );
        assert_eq!(
            ran_out.unwrap_err().context_cause().unwrap().abandoned_by(),
            Some(Abandoned::AttemptTimeout)
        );
        child.cancelled().await;
        assert_eq!(
            child.cause().unwrap().abandoned_by(),
            Some(Abandoned::AttemptTimeout)
        );
        let stopped_task = task.await.unwrap_err();
        assert_eq!(
            stopped_task.cause().unwrap().abandoned_by(),
            Some(Abandoned::AttemptTimeout)
        );
        assert_no_live_tasks_now().await;
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn values_keep_the_cap_and_without_cancel_drops_it() {
        let attempt = Context::background().capped(after(100), Abandoned::AttemptTimeout);
        let valued = attempt.with_value(7u32);
        about(valued.remaining(), 100);
        let free = valued.without_cancel();
        assert_eq!(free.remaining(), None);
        assert_eq!(free.get::<u32>(), Some(&7));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(valued.is_cancelled());
        assert!(!free.is_cancelled());
    }
}
