use std::error::Error;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use palisade_clock::{Clock, Timestamp, TokioClock, TokioSleep};

use crate::cause::Cause;
use crate::context::Context;
use crate::future::Cancelled;

/// Runs `fut` under `ctx` for at most `duration`.
///
/// The earlier of the timeout and the context's deadline wins, and the error says
/// which: [`TimeoutError::is_elapsed`] when the timeout fired first,
/// [`TimeoutError::context_cause`] when the context ended first (its deadline passed
/// or it was cancelled). On either error `fut` is dropped, so its work stops.
///
/// One timer serves the call, set for the earlier of the two deadlines; it does not
/// start the context's own timer. The future is polled once before the timer is
/// armed: a future that is ready at once (a cache hit, a value already buffered)
/// never reads the clock nor touches the timer wheel, and `duration` counts from
/// the first poll that returns `Pending`.
///
/// ```
/// use palisade_context::{Context, timeout};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(1));
/// let slow = tokio::time::sleep(Duration::from_secs(10));
///
/// // The context's deadline (1 s) comes before the timeout (5 s).
/// let err = timeout(&ctx, Duration::from_secs(5), slow).await.unwrap_err();
/// assert!(!err.is_elapsed());
/// assert!(err.context_cause().unwrap().is_deadline_exceeded());
/// # }
/// ```
///
/// # Panics
///
/// When the future is still pending after its first poll outside a tokio runtime
/// with the time driver enabled.
pub fn timeout<F: IntoFuture>(
    ctx: &Context,
    duration: Duration,
    fut: F,
) -> Timeout<'_, F::IntoFuture> {
    Timeout {
        fut: Some(fut.into_future()),
        sleep: None,
        ctx,
        cancelled: Cancelled::new(ctx, false),
        duration,
        context_first: false,
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`timeout`].
    #[must_use = "futures do nothing unless polled"]
    pub struct Timeout<'a, F> {
        #[pin]
        fut: Option<F>,
        #[pin]
        sleep: Option<TokioSleep>,
        ctx: &'a Context,
        cancelled: Cancelled<'a>,
        duration: Duration,
        // Whether the context's deadline is the earlier one; set when the timer is
        // armed.
        context_first: bool,
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, TimeoutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let err = 'ended: {
            if this.ctx.is_cancelled() {
                break 'ended TimeoutError::context(this.ctx);
            }
            if let Some(fut) = this.fut.as_mut().as_pin_mut() {
                if let Poll::Ready(output) = fut.poll(cx) {
                    this.fut.set(None);
                    return Poll::Ready(Ok(output));
                }
            }
            if this.cancelled.poll_cancelled(cx).is_ready() {
                break 'ended TimeoutError::context(this.ctx);
            }
            if this.sleep.is_none() {
                let own = TokioClock.now().saturating_add(*this.duration).as_nanos();
                let context = this.ctx.deadline_nanos();
                *this.context_first = context <= own;
                this.sleep.set(Some(
                    TokioClock.sleep_until(Timestamp::from_nanos(own.min(context))),
                ));
            }
            let sleep = this.sleep.as_mut().as_pin_mut();
            if sleep.is_some_and(|sleep| sleep.poll(cx).is_ready()) {
                if *this.context_first {
                    if let Some(node) = this.ctx.node() {
                        node.expire();
                    }
                    break 'ended TimeoutError::context(this.ctx);
                }
                break 'ended TimeoutError {
                    kind: Kind::Elapsed(*this.duration),
                };
            }
            return Poll::Pending;
        };
        this.fut.set(None);
        Poll::Ready(Err(err))
    }
}

impl<F> fmt::Debug for Timeout<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("duration", &self.duration)
            .field("ctx", self.ctx)
            .finish_non_exhaustive()
    }
}

/// Why a [`timeout`] call ended without the future's output.
#[derive(Clone, Debug)]
pub struct TimeoutError {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Elapsed(Duration),
    Context(Cause),
}

impl TimeoutError {
    fn context(ctx: &Context) -> TimeoutError {
        TimeoutError {
            kind: Kind::Context(ctx.cause().unwrap_or_else(Cause::canceled)),
        }
    }

    /// Whether the call's own timeout fired first.
    pub fn is_elapsed(&self) -> bool {
        matches!(self.kind, Kind::Elapsed(_))
    }

    /// The timeout that fired, if the call's own timeout fired first.
    pub fn elapsed(&self) -> Option<Duration> {
        match self.kind {
            Kind::Elapsed(duration) => Some(duration),
            Kind::Context(_) => None,
        }
    }

    /// Why the context ended, if it ended first (its deadline passed or it was
    /// cancelled).
    pub fn context_cause(&self) -> Option<&Cause> {
        match &self.kind {
            Kind::Context(cause) => Some(cause),
            Kind::Elapsed(_) => None,
        }
    }

    /// Whether time ran out: the call's timeout or the context's deadline. `false`
    /// when the context was cancelled.
    pub fn is_deadline_exceeded(&self) -> bool {
        match &self.kind {
            Kind::Elapsed(_) => true,
            Kind::Context(cause) => cause.is_deadline_exceeded(),
        }
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Elapsed(duration) => write!(f, "timed out after {duration:?}"),
            Kind::Context(cause) => write!(f, "{cause}"),
        }
    }
}

impl Error for TimeoutError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            Kind::Context(cause) => Some(cause),
            Kind::Elapsed(_) => None,
        }
    }
}
