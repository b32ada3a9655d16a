use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};

use crate::cause::Cause;
use crate::context::Context;
use crate::context::{NO_CAP, cap_deadline, cap_node};
use crate::node::{Node, deadline_passed};
use crate::sync::Arc;

/// The future returned by [`Context::cancelled`]: completes when the context ends.
///
/// Dropping it before it completes removes its registration from the context.
#[must_use = "futures do nothing unless polled"]
pub struct Cancelled<'a> {
    node: Option<&'a Arc<Node>>,
    /// The context's own deadline ([`Context::capped`]), or [`NO_CAP`].
    cap: u64,
    /// The node that stands for the cap, made at the first pending poll.
    own: Option<Arc<Node>>,
    /// The waker slot in the node, once registered.
    key: Option<usize>,
    /// The waker last registered, to skip the lock when it has not changed.
    waker: Option<Waker>,
    /// Whether the first pending poll starts the deadline timer.
    arm: bool,
}

impl<'a> Cancelled<'a> {
    pub(crate) fn new(ctx: &'a Context, arm: bool) -> Self {
        Cancelled {
            node: ctx.node(),
            cap: ctx.cap(),
            own: None,
            key: None,
            waker: None,
            arm,
        }
    }

    /// The node waited on: the cap's, or the context's.
    #[inline]
    fn target<'s>(own: &'s Option<Arc<Node>>, node: Option<&'a Arc<Node>>) -> Option<&'s Arc<Node>>
    where
        'a: 's,
    {
        own.as_ref().or(node)
    }

    #[inline]
    pub(crate) fn release(&mut self) {
        if let (Some(node), Some(key)) = (Self::target(&self.own, self.node), self.key.take()) {
            node.remove_listener(key);
        }
        self.waker = None;
    }

    /// Polls for the end of the context; `Ready` once it has ended.
    pub(crate) fn poll_cancelled(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        if self.cap != NO_CAP && self.own.is_none() {
            if self.node.is_some_and(|node| node.is_cancelled())
                || deadline_passed(cap_deadline(self.cap))
            {
                return Poll::Ready(());
            }
            self.own = Some(cap_node(self.node, self.cap));
        }
        let Some(node) = Self::target(&self.own, self.node) else {
            return Poll::Pending;
        };
        if node.is_cancelled() {
            if let Some(key) = self.key.take() {
                node.remove_listener(key);
            }
            self.waker = None;
            return Poll::Ready(());
        }
        if self.key.is_some() && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        if node.register_waker(&mut self.key, cx.waker()) {
            self.waker = None;
            return Poll::Ready(());
        }
        self.waker = Some(cx.waker().clone());
        if self.arm {
            self.arm = false;
            node.arm_timer();
        }
        Poll::Pending
    }
}

impl Future for Cancelled<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.poll_cancelled(cx)
    }
}

impl Drop for Cancelled<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for Cancelled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cancelled")
            .field("registered", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future returned by [`Context::run`]: the inner future's output, or the
    /// context's [`Cause`] if the context ends first.
    #[must_use = "futures do nothing unless polled"]
    pub struct Run<'a, F> {
        #[pin]
        fut: Option<F>,
        ctx: &'a Context,
        cancelled: Cancelled<'a>,
    }
}

impl<'a, F> Run<'a, F> {
    pub(crate) fn new(ctx: &'a Context, fut: F) -> Self {
        Run {
            fut: Some(fut),
            ctx,
            cancelled: Cancelled::new(ctx, true),
        }
    }
}

impl<F: Future> Future for Run<'_, F> {
    type Output = Result<F::Output, Cause>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let ended = this.ctx.is_cancelled();
        if !ended {
            if let Some(fut) = this.fut.as_mut().as_pin_mut() {
                if let Poll::Ready(output) = fut.poll(cx) {
                    this.fut.set(None);
                    this.cancelled.release();
                    return Poll::Ready(Ok(output));
                }
            }
        }
        if ended || this.cancelled.poll_cancelled(cx).is_ready() {
            // Drop the work at once, so that it stops now rather than when this
            // future is dropped.
            this.fut.set(None);
            this.cancelled.release();
            let cause = this.ctx.cause().unwrap_or_else(Cause::canceled);
            return Poll::Ready(Err(cause));
        }
        Poll::Pending
    }
}

impl<F> fmt::Debug for Run<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("ctx", self.ctx)
            .field("done", &self.fut.is_none())
            .finish_non_exhaustive()
    }
}
