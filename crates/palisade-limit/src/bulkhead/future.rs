use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_clock::Clock;

use super::core::{Answer, Core, Enqueued};
use super::{Bulkhead, BulkheadFull, OwnedPermit, OwnedPermits, Permit, Permits};

/// Where a waiting acquisition stands.
#[derive(Debug)]
pub(crate) enum Wait {
    Start,
    /// In the queue under this id, for at most this long.
    Queued(u64, Duration),
    Done,
}

/// The longest wait of an acquisition.
fn resolve(core: &Core, max_wait: Option<Duration>) -> Duration {
    let configured = core.max_wait();
    max_wait.map_or(configured, |wait| wait.min(configured))
}

/// The refusal of a waiter that was let go without its permits.
fn refusal(core: &Core, answer: Answer, permits: u32) -> BulkheadFull {
    let e = if answer == Answer::TooMany {
        BulkheadFull::too_many(core.limit(), permits)
    } else {
        BulkheadFull::closed(core.limit())
    };
    core.rejected(&e);
    e
}

impl Wait {
    /// Drives the acquisition of `n` permits; `Ready(Ok(()))` means the caller now
    /// holds them.
    ///
    /// `max_wait` is the caller's own bound, if any; the bulkhead's configured wait
    /// is read only when the call has to join the queue, so that a free slot costs
    /// one compare-and-swap and nothing else.
    ///
    /// Every acquisition counts once: nowhere when admitted, in `rejected` when
    /// refused without waiting out its time, in `timed_out` when it did, in
    /// `cancelled` when its caller dropped it while it waited (see
    /// [`Wait::cancel`]).
    #[inline]
    pub(crate) fn poll<C: Clock>(
        &mut self,
        core: &Core,
        clock: &C,
        max_wait: Option<Duration>,
        n: u32,
        sleep: Pin<&mut Option<C::Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BulkheadFull>> {
        if let Wait::Start = self {
            if core.try_acquire_n(n) {
                *self = Wait::Done;
                return Poll::Ready(Ok(()));
            }
        }
        self.poll_slow(core, clock, max_wait, n, sleep, cx)
    }

    #[inline(never)]
    fn poll_slow<C: Clock>(
        &mut self,
        core: &Core,
        clock: &C,
        max_wait: Option<Duration>,
        n: u32,
        mut sleep: Pin<&mut Option<C::Sleep>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BulkheadFull>> {
        if let Wait::Start = self {
            let max_queue = core.max_queue();
            let result = if core.is_closed() {
                Err(BulkheadFull::closed(core.limit()))
            } else if n > core.limit() {
                Err(BulkheadFull::too_many(core.limit(), n))
            } else if max_queue == 0 {
                Err(BulkheadFull::full(core.limit()))
            } else {
                match core.enqueue(n) {
                    Enqueued::Acquired => Ok(()),
                    Enqueued::QueueFull => Err(BulkheadFull::queue_full(core.limit(), max_queue)),
                    Enqueued::Closed => Err(BulkheadFull::closed(core.limit())),
                    Enqueued::TooMany => Err(BulkheadFull::too_many(core.limit(), n)),
                    Enqueued::Queued(id) => {
                        let max_wait = resolve(core, max_wait);
                        *self = Wait::Queued(id, max_wait);
                        sleep.set(Some(clock.sleep(max_wait)));
                        return self.poll_slow(core, clock, None, n, sleep, cx);
                    }
                }
            };
            *self = Wait::Done;
            if let Err(e) = &result {
                core.rejected(e);
            }
            return Poll::Ready(result);
        }
        let Wait::Queued(id, max_wait) = *self else {
            panic!("a bulkhead acquisition polled after it completed");
        };
        let answer = core.poll_grant(id, cx.waker());
        if answer != Answer::Waiting {
            *self = Wait::Done;
            // The timer goes now, not when the future is dropped.
            sleep.set(None);
            return Poll::Ready(match answer {
                Answer::Granted => Ok(()),
                answer => Err(refusal(core, answer, n)),
            });
        }
        if let Some(sleep) = sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                *self = Wait::Done;
                // A permit granted at the last moment wins over the timeout.
                return Poll::Ready(match core.leave(id) {
                    Answer::Granted => Ok(()),
                    Answer::Waiting => {
                        let e = BulkheadFull::timed_out(core.limit(), max_wait);
                        core.rejected(&e);
                        Err(e)
                    }
                    answer => Err(refusal(core, answer, n)),
                });
            }
        }
        Poll::Pending
    }

    /// Leaves the queue if still in it, releasing the `n` permits granted
    /// meanwhile; a waiter that leaves unanswered counts as cancelled.
    #[inline]
    pub(crate) fn cancel(&mut self, core: &Core, n: u32) {
        if let Wait::Queued(..) = *self {
            self.leave(core, n);
        }
    }

    #[inline(never)]
    fn leave(&mut self, core: &Core, n: u32) {
        if let Wait::Queued(id, _) = *self {
            *self = Wait::Done;
            match core.leave(id) {
                Answer::Granted => core.release_n(n),
                Answer::Waiting => core.cancelled(),
                // Refused meanwhile, never told: it counts as it would have.
                answer => drop(refusal(core, answer, n)),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Bulkhead::acquire`]: a [`Permit`], or [`BulkheadFull`] when the
    /// queue is full or the longest wait runs out, or the bulkhead is closed. Dropping it leaves the queue at
    /// once (and releases a permit granted meanwhile).
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<'a, C: Clock> {
        bulkhead: &'a Bulkhead<C>,
        max_wait: Option<Duration>,
        wait: Wait,
        #[pin]
        sleep: Option<C::Sleep>,
    }

    impl<'a, C: Clock> PinnedDrop for Acquire<'a, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.wait.cancel(&this.bulkhead.core, 1);
        }
    }
}

impl<'a, C: Clock> Acquire<'a, C> {
    pub(crate) fn new(bulkhead: &'a Bulkhead<C>, max_wait: Option<Duration>) -> Self {
        Acquire {
            bulkhead,
            max_wait,
            wait: Wait::Start,
            sleep: None,
        }
    }
}

impl<'a, C: Clock> Future for Acquire<'a, C> {
    type Output = Result<Permit<'a>, BulkheadFull>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bulkhead: &'a Bulkhead<C> = this.bulkhead;
        this.wait
            .poll(
                &bulkhead.core,
                &bulkhead.clock,
                *this.max_wait,
                1,
                this.sleep,
                cx,
            )
            .map_ok(|()| Permit::new(&bulkhead.core))
    }
}

impl<C: Clock> std::fmt::Debug for Acquire<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acquire")
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Bulkhead::acquire_owned`]: as [`Acquire`], but `'static`.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireOwned<C: Clock> {
        bulkhead: Bulkhead<C>,
        max_wait: Option<Duration>,
        wait: Wait,
        #[pin]
        sleep: Option<C::Sleep>,
    }

    impl<C: Clock> PinnedDrop for AcquireOwned<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.wait.cancel(&this.bulkhead.core, 1);
        }
    }
}

impl<C: Clock> AcquireOwned<C> {
    pub(crate) fn new(bulkhead: Bulkhead<C>, max_wait: Option<Duration>) -> Self {
        AcquireOwned {
            bulkhead,
            max_wait,
            wait: Wait::Start,
            sleep: None,
        }
    }
}

impl<C: Clock> Future for AcquireOwned<C> {
    type Output = Result<OwnedPermit, BulkheadFull>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bulkhead = &*this.bulkhead;
        this.wait
            .poll(
                &bulkhead.core,
                &bulkhead.clock,
                *this.max_wait,
                1,
                this.sleep,
                cx,
            )
            .map_ok(|()| OwnedPermit::new(bulkhead.core.clone()))
    }
}

impl<C: Clock> std::fmt::Debug for AcquireOwned<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireOwned")
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Bulkhead::acquire_many`]: [`Permits`] for several permits at
    /// once, as [`Acquire`] for one.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireMany<'a, C: Clock> {
        bulkhead: &'a Bulkhead<C>,
        permits: u32,
        max_wait: Option<Duration>,
        wait: Wait,
        #[pin]
        sleep: Option<C::Sleep>,
    }

    impl<'a, C: Clock> PinnedDrop for AcquireMany<'a, C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.wait.cancel(&this.bulkhead.core, *this.permits);
        }
    }
}

impl<'a, C: Clock> AcquireMany<'a, C> {
    pub(crate) fn new(bulkhead: &'a Bulkhead<C>, permits: u32, max_wait: Option<Duration>) -> Self {
        AcquireMany {
            bulkhead,
            permits,
            max_wait,
            wait: Wait::Start,
            sleep: None,
        }
    }
}

impl<'a, C: Clock> Future for AcquireMany<'a, C> {
    type Output = Result<Permits<'a>, BulkheadFull>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bulkhead: &'a Bulkhead<C> = this.bulkhead;
        let permits = *this.permits;
        this.wait
            .poll(
                &bulkhead.core,
                &bulkhead.clock,
                *this.max_wait,
                permits,
                this.sleep,
                cx,
            )
            .map_ok(|()| Permits::new(&bulkhead.core, permits))
    }
}

impl<C: Clock> std::fmt::Debug for AcquireMany<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireMany")
            .field("permits", &self.permits)
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Bulkhead::acquire_many_owned`]: as [`AcquireMany`], but
    /// `'static`.
    #[must_use = "futures do nothing unless polled"]
    pub struct AcquireManyOwned<C: Clock> {
        bulkhead: Bulkhead<C>,
        permits: u32,
        max_wait: Option<Duration>,
        wait: Wait,
        #[pin]
        sleep: Option<C::Sleep>,
    }

    impl<C: Clock> PinnedDrop for AcquireManyOwned<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.wait.cancel(&this.bulkhead.core, *this.permits);
        }
    }
}

impl<C: Clock> AcquireManyOwned<C> {
    pub(crate) fn new(bulkhead: Bulkhead<C>, permits: u32, max_wait: Option<Duration>) -> Self {
        AcquireManyOwned {
            bulkhead,
            permits,
            max_wait,
            wait: Wait::Start,
            sleep: None,
        }
    }
}

impl<C: Clock> Future for AcquireManyOwned<C> {
    type Output = Result<OwnedPermits, BulkheadFull>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let bulkhead = &*this.bulkhead;
        let permits = *this.permits;
        this.wait
            .poll(
                &bulkhead.core,
                &bulkhead.clock,
                *this.max_wait,
                permits,
                this.sleep,
                cx,
            )
            .map_ok(|()| OwnedPermits::new(bulkhead.core.clone(), permits))
    }
}

impl<C: Clock> std::fmt::Debug for AcquireManyOwned<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireManyOwned")
            .field("permits", &self.permits)
            .field("wait", &self.wait)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}
