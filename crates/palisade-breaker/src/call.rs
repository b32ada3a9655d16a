//! The future of [`Breaker::call`](crate::Breaker::call): admission, the call and
//! its outcome in one poll, with no state machine of its own to copy around.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_classify::Classify;
use palisade_clock::Clock;
use pin_project_lite::pin_project;

use crate::breaker::Inner;
use crate::error::CallError;
use crate::permit::Ticket;

pin_project! {
    /// The future of [`Breaker::call`](crate::Breaker::call) and
    /// [`Breaker::call_with`](crate::Breaker::call_with).
    ///
    /// When first polled it asks the breaker: rejected, it completes at once with
    /// [`CallError::Rejected`]; admitted, it runs the call and hands the outcome the
    /// classifier gives its result to the breaker. Dropped before the call
    /// completes, it counts nothing and frees its half-open probe slot. If the
    /// call's future panics, the call counts as a failure (a failed probe in the
    /// half-open state) and the panic goes on to the caller.
    #[must_use = "futures do nothing unless polled"]
    pub struct Call<'a, C: Clock, K: ?Sized, F> {
        inner: &'a Inner<C>,
        classifier: &'a K,
        ticket: Ticket,
        #[pin]
        fut: F,
    }

    impl<C: Clock, K: ?Sized, F> PinnedDrop for Call<'_, C, K, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Ticket::Probe { .. } = *this.ticket {
                this.inner.abandon(*this.ticket);
            }
        }
    }
}

impl<'a, C: Clock, K: ?Sized, F> Call<'a, C, K, F> {
    #[inline]
    pub(crate) fn new(inner: &'a Inner<C>, classifier: &'a K, fut: F) -> Self {
        Call {
            inner,
            classifier,
            ticket: Ticket::Unpolled,
            fut,
        }
    }
}

impl<C, K, F, T, E> Future for Call<'_, C, K, F>
where
    C: Clock,
    K: Classify<T, E> + ?Sized,
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, CallError<E>>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The ticket stays a local value from admission to the outcome: the copy in
        // the future is for a drop (or a panic) while the call is under way.
        let ticket = match *this.ticket {
            Ticket::Unpolled => match this.inner.load_word() {
                word if word.is_fast() => {
                    // The healthy call, spelled out so that the ticket stays one
                    // word in a register rather than a whole ticket in memory.
                    *this.ticket = Ticket::Fast { word };
                    let guard = PanicGuard {
                        inner: this.inner,
                        ticket: &mut *this.ticket,
                    };
                    let polled = this.fut.poll(cx);
                    std::mem::forget(guard);
                    let result = ready!(polled);
                    *this.ticket = Ticket::Done;
                    this.inner
                        .complete_fast(word, this.classifier.classify(&result));
                    return Poll::Ready(result.map_err(CallError::Inner));
                }
                word => match this.inner.acquire_not_fast(word) {
                    Ok(ticket) => {
                        *this.ticket = ticket;
                        ticket
                    }
                    Err(rejected) => {
                        *this.ticket = Ticket::Done;
                        return Poll::Ready(Err(CallError::Rejected(rejected)));
                    }
                },
            },
            Ticket::Done => polled_after_completion(),
            ticket => ticket,
        };
        let guard = PanicGuard {
            inner: this.inner,
            ticket: &mut *this.ticket,
        };
        let polled = this.fut.poll(cx);
        std::mem::forget(guard);
        let result = ready!(polled);
        *this.ticket = Ticket::Done;
        this.inner
            .complete(ticket, this.classifier.classify(&result));
        Poll::Ready(result.map_err(CallError::Inner))
    }
}

/// Counts the call as a failure if its future panics while polled: dropped only
/// by the unwinding (a poll that returns forgets it), so it costs the healthy
/// call nothing. The panic then goes on to the caller.
struct PanicGuard<'a, C: Clock> {
    inner: &'a Inner<C>,
    ticket: &'a mut Ticket,
}

impl<C: Clock> Drop for PanicGuard<'_, C> {
    #[cold]
    fn drop(&mut self) {
        let ticket = std::mem::replace(self.ticket, Ticket::Done);
        self.inner.panicked(ticket);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn polled_after_completion() -> ! {
    panic!("`Call` polled after completion")
}

impl<C: Clock, K: ?Sized, F> fmt::Debug for Call<'_, C, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}
