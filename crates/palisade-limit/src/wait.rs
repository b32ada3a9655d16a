//! Waiting under a caller's [`Context`]: the error of the context-taking waits.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use palisade_classify::Rejection;
use palisade_context::{Cause, Context};

/// A wait under a [`Context`] ended without what it waited for.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WaitError<E> {
    /// The strategy refused: full, or no capacity within the time the caller had.
    Rejected(E),
    /// The caller's context ended first (cancelled, or its deadline passed).
    Cancelled(Cause),
}

impl<E: Into<Rejection> + Clone> WaitError<E> {
    /// The rejection, if a strategy refused (a cancelled caller was not rejected).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            WaitError::Rejected(e) => Some(e.clone().into()),
            WaitError::Cancelled(_) => None,
        }
    }
}

impl<E> WaitError<E> {
    /// Why the context ended, if it did.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            WaitError::Cancelled(c) => Some(c),
            WaitError::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for WaitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Rejected(e) => e.fmt(f),
            WaitError::Cancelled(cause) => write!(f, "gave up waiting: {cause}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for WaitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Rejected(e) => Some(e),
            WaitError::Cancelled(cause) => Some(cause),
        }
    }
}

/// The context's cause, once it has ended.
pub(crate) fn ended(ctx: &Context) -> Option<Cause> {
    if ctx.is_cancelled() {
        Some(ctx.cause().unwrap_or(Cause::canceled()))
    } else {
        None
    }
}

/// Runs `wait` until it completes or `ctx` ends. A refusal that coincides with the
/// context's end (the wait was cut to the deadline) reports the context's cause.
pub(crate) async fn under<T, E>(
    ctx: &Context,
    wait: impl Future<Output = Result<T, E>>,
) -> Result<T, WaitError<E>> {
    if let Some(cause) = ended(ctx) {
        return Err(WaitError::Cancelled(cause));
    }
    let mut wait = pin!(wait);
    let mut cancelled = pin!(ctx.cancelled());
    poll_fn(|cx| {
        if let Poll::Ready(result) = wait.as_mut().poll(cx) {
            return Poll::Ready(result.map_err(|e| match ended(ctx) {
                Some(cause) => WaitError::Cancelled(cause),
                None => WaitError::Rejected(e),
            }));
        }
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(WaitError::Cancelled(
                ended(ctx).unwrap_or(Cause::canceled()),
            )));
        }
        Poll::Pending
    })
    .await
}
