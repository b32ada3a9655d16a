//! Drop a future at each of its await points, and check what it held after each.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::{DEFAULT_WAIT, settle};

/// The most polls [`drop_at_every_poll`] gives a future by default before it
/// fails the test as one that never completes.
const DEFAULT_MAX_POLLS: usize = 10_000;

/// What a future run by [`drop_at_every_poll`] gave when it was finally let
/// complete.
#[derive(Debug)]
#[non_exhaustive]
pub struct Dropped<T> {
    /// Its output.
    pub output: T,
    /// How many polls it took to complete; it was dropped once after each number
    /// of polls below this (0 included: created and never polled).
    pub polls: usize,
}

/// Makes a fresh future with `make` and drops it after `k` polls, for
/// `k = 0, 1, 2, …`, until a future completes within `k` polls; after every drop,
/// `released` (a [`LeakCheck::check`](crate::LeakCheck::check), or any closure whose
/// error says what is still held) must come back `Ok`. It is retried while the
/// runtime runs what the drop set off (yields only: no time passes, so what a
/// timer would release later is still held; see
/// [the crate docs](crate#waiting-is-bounded-and-virtual-in-paused-time)).
/// The completed run's output is returned, with its number of polls.
///
/// A future is polled as any task polls it: once, then again each time it wakes
/// itself, so the `k`-th drop leaves it suspended at its `k`-th await point,
/// with whatever it waits on (a timer, a permit, another task) still pending.
/// `make` is called once per run, and must make the same future each time for the
/// runs to cover every await point; what it captures is typically shared state
/// cloned in (an `Arc`, a pipeline).
///
/// Use [`DropAtEveryPoll`] to change the bounds.
///
/// # Panics
///
/// With the number of polls and `released`'s message, when `released` fails after
/// a drop; and when a run needs more than 10 000 polls, or waits more than
/// [`DEFAULT_WAIT`] (virtual under paused time) for a wake-up that does not come.
#[track_caller]
pub fn drop_at_every_poll<M, F, R, E>(
    make: M,
    released: R,
) -> impl Future<Output = Dropped<F::Output>>
where
    M: FnMut() -> F,
    F: Future,
    R: FnMut() -> Result<(), E>,
    E: fmt::Display,
{
    DropAtEveryPoll::new().run(make, released)
}

/// [`drop_at_every_poll`] with its bounds set.
#[derive(Clone, Debug)]
#[must_use = "a check does nothing until `run` is awaited"]
pub struct DropAtEveryPoll {
    max_polls: usize,
    wait: Duration,
    release_wait: Duration,
}

impl Default for DropAtEveryPoll {
    fn default() -> Self {
        DropAtEveryPoll::new()
    }
}

impl DropAtEveryPoll {
    /// At most 10 000 polls per run, [`DEFAULT_WAIT`] for each wake-up, and no
    /// time let pass for `released` to hold.
    pub fn new() -> DropAtEveryPoll {
        DropAtEveryPoll {
            max_polls: DEFAULT_MAX_POLLS,
            wait: DEFAULT_WAIT,
            release_wait: Duration::ZERO,
        }
    }

    /// The most polls a run may take to complete.
    pub fn max_polls(mut self, max_polls: usize) -> DropAtEveryPoll {
        self.max_polls = max_polls;
        self
    }

    /// How long, on tokio's clock, to wait for a wake-up between two polls.
    pub fn wait(mut self, wait: Duration) -> DropAtEveryPoll {
        self.wait = wait;
        self
    }

    /// How long, on tokio's clock, to wait for `released` to hold after a drop,
    /// once yielding to the runtime was not enough: for what is released by a
    /// timer rather than by the drop. None by default.
    pub fn release_wait(mut self, wait: Duration) -> DropAtEveryPoll {
        self.release_wait = wait;
        self
    }

    /// Runs the check; see [`drop_at_every_poll`].
    ///
    /// # Panics
    ///
    /// As [`drop_at_every_poll`] does, with this check's bounds.
    #[track_caller]
    pub fn run<M, F, R, E>(
        self,
        mut make: M,
        mut released: R,
    ) -> impl Future<Output = Dropped<F::Output>>
    where
        M: FnMut() -> F,
        F: Future,
        R: FnMut() -> Result<(), E>,
        E: fmt::Display,
    {
        let caller = std::panic::Location::caller();
        async move {
            for k in 0..=self.max_polls {
                match self.run_once(make(), k).await {
                    Run::Completed(output) => {
                        return Dropped { output, polls: k };
                    }
                    Run::Stalled(polls) => panic!(
                        "drop_at_every_poll: the future woke no one for {:?} after poll {polls} \
                         (checked at {caller})",
                        self.wait
                    ),
                    Run::Dropped => {}
                }
                let mut why = None;
                let ok = settle(self.release_wait, || match released() {
                    Ok(()) => true,
                    Err(e) => {
                        why = Some(e.to_string());
                        false
                    }
                })
                .await;
                if !ok {
                    let why = why.unwrap_or_default();
                    panic!(
                        "{}",
                        NotReleased {
                            polls: k,
                            why,
                            caller
                        }
                    );
                }
            }
            panic!(
                "drop_at_every_poll: the future did not complete within {} polls \
                 (checked at {caller})",
                self.max_polls
            )
        }
    }

    /// Polls `fut` at most `k` times (each after a wake-up but the first), and
    /// drops it after the `k`-th poll if it has not completed.
    async fn run_once<F: Future>(&self, fut: F, k: usize) -> Run<F::Output> {
        if k == 0 {
            return Run::Dropped;
        }
        let mut fut = pin!(fut);
        let wake = Arc::new(WakeFlag {
            woken: AtomicBool::new(true),
            waker: Mutex::new(None),
        });
        let inner_waker = Waker::from(wake.clone());
        let mut stall = pin!(tokio::time::sleep(self.wait));
        let mut polls = 0;
        poll_fn(|cx| {
            *wake.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            if wake.woken.swap(false, Ordering::AcqRel) {
                // The future woke itself (or this is its first poll): poll it.
                polls += 1;
                match fut.as_mut().poll(&mut Context::from_waker(&inner_waker)) {
                    Poll::Ready(output) => return Poll::Ready(Run::Completed(output)),
                    // Dropped at once, suspended where it is.
                    Poll::Pending if polls == k => return Poll::Ready(Run::Dropped),
                    Poll::Pending => {}
                }
                // It waits again: give its wake-up `wait` from now.
                stall
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.wait);
            }
            // Woken by the stall timer, or not at all yet.
            match stall.as_mut().poll(cx) {
                Poll::Ready(()) if !wake.woken.load(Ordering::Acquire) => {
                    Poll::Ready(Run::Stalled(polls))
                }
                Poll::Ready(()) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Set when the future under test wakes itself; passes the wake-up on to the
/// task running the check.
struct WakeFlag {
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(waker) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
            waker.wake_by_ref();
        }
    }
}

enum Run<T> {
    /// Completed within its polls.
    Completed(T),
    /// Dropped after its polls.
    Dropped,
    /// Waited for a wake-up that did not come, after this many polls.
    Stalled(usize),
}

struct NotReleased {
    polls: usize,
    why: String,
    caller: &'static std::panic::Location<'static>,
}

impl fmt::Display for NotReleased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.polls {
            0 => "before its first poll".to_owned(),
            1 => "after 1 poll".to_owned(),
            n => format!("after {n} polls"),
        };
        write!(
            f,
            "drop_at_every_poll: a future dropped {when} did not release what it held: {} \
             (checked at {})",
            self.why, self.caller
        )
    }
}
