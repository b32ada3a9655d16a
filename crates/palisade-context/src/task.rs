//! Tasks that carry their context: a task-local current context, spawning with a
//! context and a span, and a tracker that owns spawned tasks.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::Poll;

use tracing::Instrument;

use crate::cause::Cause;
use crate::context::{CancelGuard, Context};
use crate::sync::{Arc, AtomicUsize, Ordering};

tokio::task_local! {
    static CURRENT: Context;
}

/// The current task's context: the one given to [`scope`] or [`spawn`] around the
/// running code, or [`Context::background`] outside any.
///
/// ```
/// use palisade_context::{Context, current, scope};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let ctx = Context::background().with_value("tenant-a");
/// scope(ctx, async {
///     assert_eq!(current().get::<&str>(), Some(&"tenant-a"));
/// })
/// .await;
/// assert!(current().get::<&str>().is_none());
/// # }
/// ```
pub fn current() -> Context {
    CURRENT.try_with(Context::clone).unwrap_or_default()
}

/// Runs `fut` with `ctx` as the [`current`] context. It sets the task-local only; it
/// does not stop `fut` when `ctx` ends (use [`Context::run`] for that).
pub fn scope<F: IntoFuture>(ctx: Context, fut: F) -> Scope<F::IntoFuture> {
    Scope {
        inner: CURRENT.scope(ctx, fut.into_future()),
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`scope`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Scope<F> {
        #[pin]
        inner: tokio::task::futures::TaskLocalFuture<Context, F>,
    }
}

impl<F: Future> Future for Scope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> fmt::Debug for Scope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

/// Spawns `fut` as a task that carries `ctx` and the current tracing span.
///
/// Inside the task, [`current`] is `ctx` and the task's events belong to the span
/// that was current here. When `ctx` ends, the task's future is dropped, so its work
/// stops, and the task ends with [`TaskError::cause`]. The task is owned by the
/// [`Tracker`] found in `ctx` (a value added with [`Context::with_value`]), or by
/// [`Tracker::global`] otherwise, so that [`Tracker::wait`] and
/// [`Tracker::shutdown`] can wait for it.
///
/// ```
/// use palisade_context::{Context, Tracker, spawn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tracker = Tracker::new();
/// let ctx = Context::background().with_value(tracker.clone());
/// let (ctx, guard) = ctx.with_cancel();
///
/// let answer = spawn(&ctx, async { 42 });
/// assert_eq!(answer.await.unwrap(), 42);
///
/// let stuck = spawn(&ctx, std::future::pending::<()>());
/// drop(guard); // cancels `ctx`: the stuck task stops
/// assert!(stuck.await.unwrap_err().cause().unwrap().is_canceled());
/// tracker.wait().await;
/// # }
/// ```
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn spawn<F>(ctx: &Context, fut: F) -> Spawned<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match ctx.get::<Tracker>() {
        Some(tracker) => tracker.spawn(ctx, fut),
        None => Tracker::global().spawn(ctx, fut),
    }
}

/// Owns spawned tasks so that shutdown can wait for them (Go's `sync.WaitGroup`
/// around goroutines, without the forgotten `Done()`).
///
/// Clones share one set of tasks. A task counts from its spawn until its future is
/// dropped, whether it completed, was stopped by its context or was aborted.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<TrackerInner>,
}

struct TrackerInner {
    /// Twice the number of live tasks, plus one once closed.
    state: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Ends the tasks on [`Tracker::shutdown`].
    stop: Context,
    stop_guard: CancelGuard,
}

const CLOSED: usize = 1;
const TASK: usize = 2;

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    /// An empty, open tracker.
    pub fn new() -> Tracker {
        #[allow(clippy::disallowed_methods)] // a tracker's stop signal is a root of its own
        let (stop, stop_guard) = Context::background().with_cancel();
        Tracker {
            inner: Arc::new(TrackerInner {
                state: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                stop,
                stop_guard,
            }),
        }
    }

    /// The process-wide tracker that [`spawn`] uses when the context carries none.
    pub fn global() -> &'static Tracker {
        static GLOBAL: OnceLock<Tracker> = OnceLock::new();
        GLOBAL.get_or_init(Tracker::new)
    }

    /// Spawns `fut` under `ctx` on this tracker, as [`spawn`] does.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn<F>(&self, ctx: &Context, fut: F) -> Spawned<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.state.fetch_add(TASK, Ordering::Relaxed);
        let token = TaskToken {
            inner: Arc::clone(&self.inner),
        };
        let ctx = ctx.clone();
        let span = tracing::Span::current();
        let task = async move {
            let _token = token;
            let stop = _token.inner.stop.clone();
            let work = scope(ctx.clone(), fut);
            match stop.run(ctx.run(work)).await {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(cause)) | Err(cause) => Err(cause),
            }
        };
        #[allow(clippy::disallowed_methods)] // the spawn the context-carrying forms build on
        let handle = tokio::spawn(task.instrument(span));
        Spawned { handle }
    }

    /// How many tasks are live.
    pub fn len(&self) -> usize {
        self.inner.state.load(Ordering::Acquire) / TASK
    }

    /// Whether no task is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks the tracker closed: [`wait`](Tracker::wait) then returns once no task is
    /// live. Spawning after closing still works and is waited for.
    pub fn close(&self) {
        let previous = self.inner.state.fetch_or(CLOSED, Ordering::AcqRel);
        if previous == 0 {
            self.inner.idle.notify_waiters();
        }
    }

    /// Whether the tracker is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Closes the tracker and waits until every task has ended, letting them finish.
    pub async fn wait(&self) {
        self.close();
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.state.load(Ordering::Acquire) == CLOSED {
                return;
            }
            idle.await;
        }
    }

    /// Closes the tracker, stops every task (their futures are dropped, and they end
    /// with a [`Cause::canceled`]), and waits until all have ended. Tasks spawned
    /// after this are stopped at once.
    pub async fn shutdown(&self) {
        self.inner.stop_guard.cancel();
        self.wait().await;
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("live", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Counts a task as live while it exists.
struct TaskToken {
    inner: Arc<TrackerInner>,
}

impl Drop for TaskToken {
    fn drop(&mut self) {
        let previous = self.inner.state.fetch_sub(TASK, Ordering::AcqRel);
        if previous == TASK | CLOSED {
            self.inner.idle.notify_waiters();
        }
    }
}

/// A task spawned with [`spawn`] or [`Tracker::spawn`]; await it for its output.
///
/// Dropping it detaches the task, which still ends with its context.
#[must_use = "dropping the handle detaches the task"]
pub struct Spawned<T> {
    handle: tokio::task::JoinHandle<Result<T, Cause>>,
}

impl<T> Spawned<T> {
    /// Stops the task: its future is dropped at the next opportunity.
    pub fn abort(&self) {
        self.handle.abort();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl<T> Future for Spawned<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.handle)
            .poll(cx)
            .map(|joined| match joined {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(cause)) => Err(TaskError {
                    kind: TaskErrorKind::Cancelled(cause),
                }),
                Err(err) if err.is_panic() => Err(TaskError {
                    kind: TaskErrorKind::Panicked(err.into_panic()),
                }),
                Err(_) => Err(TaskError {
                    kind: TaskErrorKind::Aborted,
                }),
            })
    }
}

impl<T> fmt::Debug for Spawned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Why a spawned task ended without its output.
pub struct TaskError {
    kind: TaskErrorKind,
}

enum TaskErrorKind {
    Cancelled(Cause),
    Panicked(Box<dyn Any + Send + 'static>),
    Aborted,
}

impl TaskError {
    /// Why the task's context (or its tracker) ended, if that stopped it.
    pub fn cause(&self) -> Option<&Cause> {
        match &self.kind {
            TaskErrorKind::Cancelled(cause) => Some(cause),
            _ => None,
        }
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Panicked(_))
    }

    /// Whether the task was aborted through [`Spawned::abort`] or by the runtime
    /// shutting down.
    pub fn is_aborted(&self) -> bool {
        matches!(self.kind, TaskErrorKind::Aborted)
    }

    /// The panic payload, to resume the panic with `std::panic::resume_unwind`.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self.kind {
            TaskErrorKind::Panicked(payload) => Some(payload),
            _ => None,
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TaskErrorKind::Cancelled(cause) => f.debug_tuple("Cancelled").field(cause).finish(),
            TaskErrorKind::Panicked(_) => f.write_str("Panicked"),
            TaskErrorKind::Aborted => f.write_str("Aborted"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TaskErrorKind::Cancelled(cause) => write!(f, "task stopped: {cause}"),
            TaskErrorKind::Panicked(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a non-string payload");
                write!(f, "task panicked: {message}")
            }
            TaskErrorKind::Aborted => f.write_str("task aborted"),
        }
    }
}

impl Error for TaskError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            TaskErrorKind::Cancelled(cause) => Some(cause),
            _ => None,
        }
    }
}
