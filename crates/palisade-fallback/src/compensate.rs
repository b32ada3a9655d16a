use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use palisade_classify::catch_panic;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::ConfigError;

/// What a compensation task is handed instead of the caller's context: the same
/// values without the cancellation, so that the background work outlives the call
/// that failed.
///
/// `()` detaches to `()`, for chains that carry no context; a
/// [`Context`](palisade_context::Context) to its values without its cancellation.
///
/// Open: implement it for your own types. A method added in a later version comes
/// with a default body, so an implementation keeps compiling.
pub trait Detach {
    /// The detached form handed to the background task.
    type Detached: Send + 'static;

    /// The values of `self`, without its cancellation.
    fn detach(&self) -> Self::Detached;
}

impl Detach for () {
    type Detached = ();

    fn detach(&self) {}
}

/// A [`Context`](palisade_context::Context) detaches to
/// [`without_cancel()`](palisade_context::Context::without_cancel): the same typed
/// values (request id, tenant, trace ids), no cancellation and no deadline.
impl Detach for palisade_context::Context {
    type Detached = palisade_context::Context;

    fn detach(&self) -> palisade_context::Context {
        self.without_cancel()
    }
}

/// The default bound on compensation tasks in flight: 1024.
///
/// Compensation runs while a dependency is failing, which is exactly when failures
/// arrive fastest; without a bound an outage would grow memory with every failed
/// call. A thousand background tasks is far more than a healthy recovery needs and
/// still a bounded amount of memory; past it the compensation tier refuses (counted
/// in [`CompensatorSnapshot::refused`]) and the chain moves on.
pub const DEFAULT_COMPENSATION_CAPACITY: usize = 1024;

/// Owns the background compensation tasks of one or more fallback chains: bounds how
/// many run at once, counts them, and lets shutdown wait for them.
///
/// Clones share the same tasks. Each task runs on the current tokio runtime with
/// the tracing span that was current when it started; a panic in it is caught,
/// logged and counted, never propagated.
///
/// ```
/// use palisade_fallback::Compensator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let compensator = Compensator::new();
/// // ... use it in fallback chains ...
/// compensator.shutdown().await; // refuse new tasks, wait for the running ones
/// assert_eq!(compensator.snapshot().in_flight, 0);
/// # }
/// ```
#[derive(Clone)]
pub struct Compensator {
    inner: Arc<Inner>,
}

struct Inner {
    tracker: TaskTracker,
    capacity: usize,
    in_flight: AtomicUsize,
    closed: AtomicBool,
    started: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
    refused: AtomicU64,
}

/// Counters of a [`Compensator`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompensatorSnapshot {
    /// Tasks running now.
    pub in_flight: usize,
    /// Tasks started since creation.
    pub started: u64,
    /// Tasks that ran to the end (including those that panicked).
    pub completed: u64,
    /// Tasks that panicked.
    pub panicked: u64,
    /// Compensations refused: the bound was reached, the compensator was shut
    /// down, or there was no tokio runtime to run on.
    pub refused: u64,
}

/// Why a compensation task was not started.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompensationRefused {
    /// The bound of tasks in flight was reached.
    Full {
        /// The bound.
        capacity: usize,
    },
    /// [`Compensator::shutdown`] was called.
    ShutDown,
    /// No tokio runtime was running on this thread.
    NoRuntime,
}

impl fmt::Display for CompensationRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompensationRefused::Full { capacity } => write!(
                f,
                "compensation refused: {capacity} compensation tasks already in flight"
            ),
            CompensationRefused::ShutDown => {
                f.write_str("compensation refused: the compensator is shut down")
            }
            CompensationRefused::NoRuntime => {
                f.write_str("compensation refused: no tokio runtime is running")
            }
        }
    }
}

impl std::error::Error for CompensationRefused {}

impl Default for Compensator {
    fn default() -> Self {
        Self::new()
    }
}

impl Compensator {
    /// A compensator bounded to [`DEFAULT_COMPENSATION_CAPACITY`] tasks in flight.
    pub fn new() -> Self {
        Self::build(DEFAULT_COMPENSATION_CAPACITY)
    }

    /// A compensator bounded to `capacity` tasks in flight (at least 1).
    pub fn with_capacity(capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new("compensation.capacity", 0, "at least 1"));
        }
        Ok(Self::build(capacity))
    }

    fn build(capacity: usize) -> Self {
        Compensator {
            inner: Arc::new(Inner {
                tracker: TaskTracker::new(),
                capacity,
                in_flight: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                started: AtomicU64::new(0),
                completed: AtomicU64::new(0),
                panicked: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The bound of tasks in flight.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The counters now.
    pub fn snapshot(&self) -> CompensatorSnapshot {
        let i = &self.inner;
        CompensatorSnapshot {
            in_flight: i.in_flight.load(Ordering::Acquire),
            started: i.started.load(Ordering::Relaxed),
            completed: i.completed.load(Ordering::Relaxed),
            panicked: i.panicked.load(Ordering::Relaxed),
            refused: i.refused.load(Ordering::Relaxed),
        }
    }

    /// Starts `task` in the background, unless the bound is reached, the
    /// compensator is shut down or no tokio runtime is running.
    pub fn spawn<F>(&self, task: F) -> Result<(), CompensationRefused>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let refused = |why| {
            self.inner.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason = %why, "compensation refused");
            Err(why)
        };
        if self.inner.closed.load(Ordering::Acquire) {
            return refused(CompensationRefused::ShutDown);
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return refused(CompensationRefused::NoRuntime);
        };
        let capacity = self.inner.capacity;
        if self
            .inner
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_err()
        {
            return refused(CompensationRefused::Full { capacity });
        }
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.inner.clone());
        let span = tracing::Span::current();
        self.inner.tracker.spawn_on(
            async move {
                let slot = slot;
                if let Err(panic) = catch_panic(task).await {
                    slot.0.panicked.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %panic, "compensation task panicked");
                }
            }
            .instrument(span),
            &handle,
        );
        Ok(())
    }

    /// Refuses new tasks and waits until every running one has finished.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

/// Releases a task's place when the task ends or is dropped (runtime shutdown).
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.completed.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Compensator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compensator")
            .field("capacity", &self.inner.capacity)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}
