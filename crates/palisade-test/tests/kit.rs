//! Each check passes when nothing is left, and fails, saying what, when something is.
#![allow(clippy::disallowed_methods)] // a test is the root: its own tasks and timers

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use palisade_test::{
    DropAtEveryPoll, LeakCheck, TaskBaseline, assert_no_live_tasks, drop_at_every_poll, live_tasks,
    no_live_tasks,
};

const MS: Duration = Duration::from_millis(1);

/// The panic message of `fut`, which must panic.
async fn panic_message(fut: impl Future<Output = ()>) -> String {
    use futures_like::catch_unwind;
    match catch_unwind(AssertUnwindSafe(fut)).await {
        Ok(()) => panic!("the check passed, but it should have failed"),
        Err(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    }
}

/// `catch_unwind` for futures, without a dependency for it.
mod futures_like {
    use std::any::Any;
    use std::future::Future;
    use std::panic::{AssertUnwindSafe, catch_unwind as catch};
    use std::pin::pin;
    use std::task::Poll;

    pub(crate) async fn catch_unwind<F: Future>(
        fut: AssertUnwindSafe<F>,
    ) -> Result<F::Output, Box<dyn Any + Send>> {
        let mut fut = pin!(fut.0);
        std::future::poll_fn(
            |cx| match catch(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
                Err(payload) => Poll::Ready(Err(payload)),
            },
        )
        .await
    }
}

#[tokio::test(start_paused = true)]
async fn no_live_tasks_waits_for_tasks_that_end_in_virtual_time() {
    let started = tokio::time::Instant::now();
    tokio::spawn(async { tokio::time::sleep(200 * MS).await });
    assert_eq!(live_tasks(), 1);
    assert_no_live_tasks().await;
    // The task ended at 200 ms of virtual time, and the check saw it then.
    let waited = started.elapsed();
    assert!(waited >= 200 * MS && waited < 210 * MS, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn no_live_tasks_fails_on_a_task_left_alive() {
    let (_keep, never) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(never);
    let message = panic_message(assert_no_live_tasks()).await;
    assert!(
        message.starts_with("1 task is still alive after waiting 1s"),
        "{message}"
    );
    assert!(message.contains("kit.rs"), "names the caller: {message}");
    let err = no_live_tasks(10 * MS).await.unwrap_err();
    assert_eq!(err.alive(), 1);
    assert_eq!(err.left(), 1);
    task.abort();
    assert_no_live_tasks().await;
}

#[tokio::test(start_paused = true)]
async fn a_baseline_counts_only_the_tasks_started_after_it() {
    let (_keep, never) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(never);
    let baseline = TaskBaseline::now();
    assert_eq!(baseline.tasks(), 1);
    baseline.assert_none_left().await;

    let (_keep2, never2) = tokio::sync::oneshot::channel::<()>();
    let leaked = tokio::spawn(never2);
    let err = baseline.check(10 * MS).await.unwrap_err();
    assert_eq!((err.alive(), err.left()), (2, 1));
    assert!(
        err.to_string().contains("(2 alive, 1 before the test)"),
        "{err}"
    );
    leaked.abort();
    server.abort();
    assert_no_live_tasks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_live_tasks_on_a_multi_thread_runtime() {
    let tasks: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async { tokio::task::yield_now().await }))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_no_live_tasks().await;
}

/// A resource counted while a guard lives, as a permit is.
#[derive(Clone, Default)]
struct Slots(Arc<AtomicU64>);

struct SlotGuard(Arc<AtomicU64>);

impl Slots {
    fn take(&self) -> SlotGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        SlotGuard(self.0.clone())
    }

    fn leaks(&self) -> LeakCheck {
        let slots = self.0.clone();
        LeakCheck::new().gauge("slots", move || slots.load(Ordering::Relaxed))
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a slot, then waits at three await points before it answers.
async fn three_waits(slots: Slots) -> u32 {
    let _slot = slots.take();
    tokio::time::sleep(10 * MS).await;
    tokio::task::yield_now().await;
    tokio::time::sleep(10 * MS).await;
    3
}

#[tokio::test(start_paused = true)]
async fn drop_at_every_poll_drops_at_each_await_point_and_checks_after_each() {
    let slots = Slots::default();
    let leaks = slots.leaks();
    let runs = Arc::new(AtomicUsize::new(0));
    let checks = Arc::new(AtomicUsize::new(0));
    let done = drop_at_every_poll(
        || {
            runs.fetch_add(1, Ordering::Relaxed);
            three_waits(slots.clone())
        },
        || {
            checks.fetch_add(1, Ordering::Relaxed);
            leaks.check()
        },
    )
    .await;
    assert_eq!(done.output, 3);
    // Polled at the start and after each of its three waits.
    assert_eq!(done.polls, 4);
    // Dropped after 0, 1, 2 and 3 polls, then run to the end.
    assert_eq!(runs.load(Ordering::Relaxed), 5);
    assert_eq!(checks.load(Ordering::Relaxed), 4);
    leaks.assert_released().await;
}

/// Takes a slot and, when dropped, hands it to a task that keeps it: a leak that
/// only shows when the future is dropped before it completes.
struct LeakOnDrop {
    slots: Slots,
    polls: u32,
}

impl Future for LeakOnDrop {
    type Output = u32;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        self.polls += 1;
        if self.polls == 3 {
            return std::task::Poll::Ready(7);
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Drop for LeakOnDrop {
    fn drop(&mut self) {
        if (1..3).contains(&self.polls) {
            std::mem::forget(self.slots.take());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn drop_at_every_poll_fails_on_a_slot_kept_after_a_drop() {
    let slots = Slots::default();
    let leaks = slots.leaks();
    let message = panic_message(async {
        drop_at_every_poll(
            || LeakOnDrop {
                slots: slots.clone(),
                polls: 0,
            },
            || leaks.check(),
        )
        .await;
    })
    .await;
    assert!(
        message.starts_with(
            "drop_at_every_poll: a future dropped after 1 poll did not release what it held: \
             still held: slots = 1"
        ),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn drop_at_every_poll_fails_on_a_future_that_never_wakes() {
    let message = panic_message(async {
        DropAtEveryPoll::new()
            .wait(50 * MS)
            .run(std::future::pending::<()>, || Ok::<(), String>(()))
            .await;
    })
    .await;
    assert!(
        message.starts_with("drop_at_every_poll: the future woke no one for 50ms after poll 1"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn drop_at_every_poll_fails_on_a_future_that_needs_too_many_polls() {
    let message = panic_message(async {
        DropAtEveryPoll::new()
            .max_polls(3)
            .run(
                || async {
                    for _ in 0..10 {
                        tokio::task::yield_now().await;
                    }
                },
                || Ok::<(), String>(()),
            )
            .await;
    })
    .await;
    assert!(
        message.starts_with("drop_at_every_poll: the future did not complete within 3 polls"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_leak_check_waits_for_a_release_that_takes_virtual_time() {
    let slots = Slots::default();
    let leaks = slots.leaks();
    let guard = slots.take();
    tokio::spawn(async move {
        tokio::time::sleep(300 * MS).await;
        drop(guard);
    });
    assert!(leaks.check().is_err());
    leaks.assert_released().await;
    assert_no_live_tasks().await;
}

#[tokio::test(start_paused = true)]
async fn a_leak_check_fails_on_a_slot_kept_and_names_every_gauge_held() {
    let slots = Slots::default();
    let other = Slots::default();
    let o = other.0.clone();
    let leaks = slots
        .leaks()
        .merge(LeakCheck::new().gauge("other", move || o.load(Ordering::Relaxed)));
    assert_eq!(leaks.names().collect::<Vec<_>>(), ["slots", "other"]);
    let _a = slots.take();
    let _b = other.take();
    let _c = other.take();
    let message = panic_message(leaks.assert_released()).await;
    assert!(
        message.starts_with("still held: slots = 1, other = 2 (after waiting 1s"),
        "{message}"
    );
    let err = leaks.released(MS).await.unwrap_err();
    assert_eq!(err.held().len(), 2);
    assert_eq!(
        (err.held()[1].name.as_str(), err.held()[1].value),
        ("other", 2)
    );
}

#[tokio::test(start_paused = true)]
async fn the_now_check_lets_no_time_pass() {
    let started = tokio::time::Instant::now();
    tokio::spawn(async { tokio::time::sleep(200 * MS).await });
    let message = panic_message(palisade_test::assert_no_live_tasks_now()).await;
    assert!(
        message.starts_with("1 task is still alive (no time let pass)"),
        "{message}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    // The same task ends in time for the waiting check.
    assert_no_live_tasks().await;
}

/// Takes a slot and, when dropped early, hands it to a task that frees it 100 ms
/// later: released by a timer, not by the drop.
async fn released_later(slots: Slots) -> u32 {
    struct Later(Option<SlotGuard>);
    impl Drop for Later {
        fn drop(&mut self) {
            if let Some(slot) = self.0.take() {
                tokio::spawn(async move {
                    tokio::time::sleep(100 * MS).await;
                    drop(slot);
                });
            }
        }
    }
    let mut later = Later(Some(slots.take()));
    tokio::task::yield_now().await;
    drop(later.0.take());
    5
}

#[tokio::test(start_paused = true)]
async fn a_release_left_to_a_timer_fails_unless_a_release_wait_is_given() {
    let slots = Slots::default();
    let leaks = slots.leaks();
    let message = panic_message(async {
        drop_at_every_poll(|| released_later(slots.clone()), || leaks.check()).await;
    })
    .await;
    assert!(
        message.contains("dropped after 1 poll did not release what it held"),
        "{message}"
    );
    leaks.assert_released().await;

    let done = DropAtEveryPoll::new()
        .release_wait(200 * MS)
        .run(|| released_later(slots.clone()), || leaks.check())
        .await;
    assert_eq!((done.output, done.polls), (5, 2));
    assert_no_live_tasks().await;
}
