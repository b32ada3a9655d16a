//! No task left alive: the end of a test as Go's goleak checks it.

use std::fmt;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::{DEFAULT_WAIT, settle};

/// How many tasks of the current runtime are alive now: spawned and not yet
/// ended (finished, cancelled or aborted and dropped by the runtime). The future
/// a runtime's `block_on` runs, such as a `#[tokio::test]` body, is not a task.
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn live_tasks() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// Waits, boundedly, until no task of the current runtime is alive, and panics
/// with the number still alive if some are after [`DEFAULT_WAIT`] (virtual under
/// paused time).
///
/// Call it at the end of a test, after dropping what owns the tasks the test
/// started. On a runtime shared with other work, use a [`TaskBaseline`] instead.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let task = tokio::spawn(async { tokio::time::sleep(std::time::Duration::from_millis(5)).await });
/// task.await.unwrap();
/// palisade_test::assert_no_live_tasks().await;
/// # }
/// ```
///
/// # Panics
///
/// When tasks are still alive, or outside a tokio runtime.
#[track_caller]
pub fn assert_no_live_tasks() -> impl Future<Output = ()> + Send {
    let caller = std::panic::Location::caller();
    async move {
        if let Err(e) = no_live_tasks(DEFAULT_WAIT).await {
            panic!("{e} (checked at {caller})");
        }
    }
}

/// Lets the runtime run (yielding to it a few hundred times, without letting
/// time pass) until no task of the current runtime is alive, and panics with the
/// number still alive if some are.
///
/// The check for "dropping this ends its tasks at once": a task that would end
/// only when its timer fires still counts as alive, even under paused time.
///
/// # Panics
///
/// When tasks are still alive, or outside a tokio runtime.
#[track_caller]
pub fn assert_no_live_tasks_now() -> impl Future<Output = ()> + Send {
    let caller = std::panic::Location::caller();
    async move {
        if let Err(e) = no_live_tasks(Duration::ZERO).await {
            panic!("{e} (checked at {caller})");
        }
    }
}

/// Waits up to `wait` on tokio's clock (after yielding to the runtime; with
/// `Duration::ZERO`, only that) until no task of the current runtime is
/// alive; the error says how many still are.
///
/// # Panics
///
/// Outside a tokio runtime.
pub async fn no_live_tasks(wait: Duration) -> Result<(), LiveTasks> {
    TaskBaseline { baseline: 0 }.check(wait).await
}

/// The tasks alive when a test started, so that its end can be checked against
/// them on a runtime that also runs other work (a shared runtime, a server
/// started once for many tests).
///
/// ```
/// use palisade_test::TaskBaseline;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// // Started before the test, and alive after it: not the test's business.
/// let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(stopped);
///
/// let baseline = TaskBaseline::now();
/// tokio::spawn(async {}).await.unwrap();
/// baseline.assert_none_left().await;
/// # server.abort();
/// # }
/// ```
#[derive(Copy, Clone, Debug)]
pub struct TaskBaseline {
    baseline: usize,
}

impl TaskBaseline {
    /// The tasks of the current runtime alive now.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn now() -> TaskBaseline {
        TaskBaseline {
            baseline: live_tasks(),
        }
    }

    /// How many tasks were alive when the baseline was taken.
    pub fn tasks(&self) -> usize {
        self.baseline
    }

    /// Waits up to `wait` on tokio's clock until no more tasks are alive than at
    /// the baseline; the error says how many more are.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub async fn check(&self, wait: Duration) -> Result<(), LiveTasks> {
        let metrics = Handle::current().metrics();
        let baseline = self.baseline;
        if settle(wait, || metrics.num_alive_tasks() <= baseline).await {
            return Ok(());
        }
        Err(LiveTasks {
            alive: metrics.num_alive_tasks(),
            baseline,
            waited: wait,
        })
    }

    /// Waits up to [`DEFAULT_WAIT`] until no more tasks are alive than at the
    /// baseline, and panics if more still are.
    ///
    /// # Panics
    ///
    /// When more tasks are alive, or outside a tokio runtime.
    #[track_caller]
    pub fn assert_none_left(&self) -> impl Future<Output = ()> + Send + 'static {
        let caller = std::panic::Location::caller();
        let this = *self;
        async move {
            if let Err(e) = this.check(DEFAULT_WAIT).await {
                panic!("{e} (checked at {caller})");
            }
        }
    }
}

/// Tasks still alive at the end of a test: made by [`no_live_tasks`] and
/// [`TaskBaseline::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTasks {
    alive: usize,
    baseline: usize,
    waited: Duration,
}

impl LiveTasks {
    /// The tasks alive when the check gave up.
    pub fn alive(&self) -> usize {
        self.alive
    }

    /// How many of them the test left: those beyond the baseline.
    pub fn left(&self) -> usize {
        self.alive.saturating_sub(self.baseline)
    }
}

impl fmt::Display for LiveTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = self.left();
        write!(
            f,
            "{left} task{} still alive",
            if left == 1 { " is" } else { "s are" },
        )?;
        if self.waited.is_zero() {
            f.write_str(" (no time let pass)")?;
        } else {
            write!(f, " after waiting {:?} on the runtime's clock", self.waited)?;
        }
        if self.baseline > 0 {
            write!(
                f,
                " ({} alive, {} before the test)",
                self.alive, self.baseline
            )?;
        }
        f.write_str(
            ": something spawned during the test was neither awaited, cancelled nor aborted",
        )
    }
}

impl std::error::Error for LiveTasks {}
