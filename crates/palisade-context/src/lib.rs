//! Context for Palisade: every call carries a deadline and a cancellation signal
//! that reach every child call and spawned task, and cross process boundaries.
//!
//! A [`Context`] is a node in a cancellation tree. It carries a deadline (never later
//! than its parent's), typed values, and, once it ends, a [`Cause`]: canceled,
//! deadline exceeded, or an error of your own. Go's classic context failures cannot
//! happen here:
//!
//! - **the forgotten `cancel()`**: the [`CancelGuard`] that can cancel a child
//!   cancels it when dropped, and a child whose handles are all gone unregisters
//!   from its parent, so a long-lived parent does not grow;
//! - **leaked timers**: no timer exists until someone awaits [`Context::cancelled`];
//!   then at most one per context, released with it;
//! - **tasks started without the context**: [`spawn`] carries the context and the
//!   current tracing span into the task, stops the task's work when the context
//!   ends, and a [`Tracker`] waits for the tasks at shutdown;
//! - **deadlines lost at service boundaries**: [`header`] encodes the time left as a
//!   `grpc-timeout` or milliseconds value and decodes untrusted values defensively,
//!   and [`trace`] does the same for the trace context (W3C `traceparent`, B3) and
//!   the request id, which travel in the context as typed values.
//!
//! [`Context::is_cancelled`] is one atomic load (two for a child that has not been
//! awaited, plus a load of the recent clock when the context has a deadline);
//! cancelling a parent wakes every descendant with no lock held while waking.
//! A child that nobody waits on is created and dropped without touching its
//! parent's lock, and without allocating: each thread keeps the node of the last
//! such child it dropped (one node, about 120 bytes, freed when the thread exits)
//! and the next child created on it reuses that node.
//!
//! # Example
//!
//! ```
//! use palisade_context::{Context, timeout};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! #[derive(Debug)]
//! struct RequestId(u64);
//!
//! async fn handle(ctx: &Context) -> Result<&'static str, palisade_context::TimeoutError> {
//!     // The shorter of 100 ms and the request's remaining time applies.
//!     timeout(ctx, Duration::from_millis(100), async { "fetched" }).await
//! }
//!
//! let (request, _guard) = Context::background()
//!     .with_value(RequestId(7))
//!     .with_timeout(Duration::from_secs(2));
//! assert_eq!(handle(&request).await.unwrap(), "fetched");
//! assert_eq!(request.get::<RequestId>().unwrap().0, 7);
//!
//! // Work that outlives the context's end is dropped, and the cause says why.
//! let cause = request
//!     .run(tokio::time::sleep(Duration::from_secs(60)))
//!     .await
//!     .unwrap_err();
//! assert!(cause.is_deadline_exceeded());
//! # }
//! ```
//!
//! # From Go's `context`
//!
//! | Go | here |
//! | --- | --- |
//! | `context.Background()` | [`Context::background`] |
//! | `ctx, cancel := context.WithCancel(parent)` | `let (ctx, guard) = parent.with_cancel();` — dropping `guard` cancels; [`CancelGuard::cancel`] cancels early |
//! | `context.WithCancelCause(parent)`, `cancel(err)` | [`Context::with_cancel`], then [`CancelGuard::cancel_with`]`(err)` |
//! | `context.WithTimeout(parent, d)` | [`Context::with_timeout`]`(d)` |
//! | `context.WithDeadline(parent, t)` | [`Context::with_deadline`]`(t)`, `t` a [`palisade_clock::Timestamp`] on the `TokioClock` axis |
//! | `WithDeadline` for one attempt of a retry, with a cause that says which limit passed | [`Context::capped`]`(t, reason)`: no guard, no allocation; [`Context::with_deadline_reason`] for one with a guard |
//! | `context.WithValue(parent, key, v)` | [`Context::with_value`]`(v)`, read with [`Context::get`]`::<T>()`: keyed by type, no string keys |
//! | `context.WithoutCancel(parent)` | [`Context::without_cancel`] |
//! | `stop := context.AfterFunc(ctx, f)` | `let handle = ctx.`[`after_cancel`](Context::after_cancel)`(f);`, `handle.stop()` |
//! | `<-ctx.Done()` | `ctx.`[`cancelled`](Context::cancelled)`().await`; polling: [`Context::is_cancelled`] |
//! | `ctx.Err()`, `context.Cause(ctx)` | [`Context::cause`]: [`Cause::is_canceled`], [`Cause::is_deadline_exceeded`], [`Cause::user_cause`] |
//! | `ctx.Deadline()` | [`Context::deadline`], [`Context::remaining`] |
//! | `select { case <-ctx.Done(): ...; case r := <-work: ... }` | [`Context::run`]`(work)` |
//! | `go f(ctx)` | [`spawn`]`(&ctx, f)`, owned by a [`Tracker`] |
//! | `grpc-timeout` propagation | [`header`] |
//! | trace and request ids in `context.WithValue`; `traceparent` / `b3` propagation (OpenTelemetry's propagators) | [`TraceContext`] and [`RequestId`] as values; the [`trace`] codecs for `traceparent`, `tracestate`, `b3` and `X-B3-*` |
//!
//! # Time
//!
//! Deadlines are read on [`palisade_clock::TokioClock`], so tokio's paused time
//! (`#[tokio::test(start_paused = true)]`) drives them, and timers are tokio timers:
//! awaiting a deadline needs a tokio runtime with the time driver.
//!
//! [`Context::cancelled`], [`Context::run`], [`timeout`] and [`Context::remaining`]
//! are exact. [`Context::is_cancelled`] compares the deadline with the cheap
//! [`recent`](palisade_clock::Clock::recent) reading and reads the exact clock only
//! near the deadline (within 5 ms, or four times
//! [`recent_resolution`](palisade_clock::recent_resolution) where the recent
//! reading is coarser), so it is exact as long as the recent reading lags by less
//! than that (it lags by about 1 ms, more only on a machine that starves the
//! clock's ticker thread). In tests with paused time, enable
//! `palisade-clock`'s `test-util` feature (or the `palisade` facade's), which
//! makes the recent reading follow paused time.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cause;
mod context;
mod future;
pub mod header;
#[cfg(all(feature = "tokio-util", not(loom)))]
mod interop;
mod node;
mod slab;
mod sync;
mod task;
mod timeout;
pub mod trace;

pub use cause::{Abandoned, Cause, UserCause};
pub use context::{AfterCancel, CancelGuard, Context, Values};
pub use future::{Cancelled, Run};
pub use task::{Scope, Spawned, TaskError, Tracker, current, scope, spawn};
pub use timeout::{Timeout, TimeoutError, timeout};
pub use trace::{RequestId, SpanId, TraceContext, TraceFlags, TraceId, TraceState};

/// Hooks for the loom models in `tests/loom.rs`: deliberate faults and a view of
/// the registry. Compiled only under `--cfg loom`.
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_support {
    pub use crate::sync::Fault;

    /// Switches `fault` on (or all faults off) for the model run on this thread.
    pub fn inject(fault: Option<Fault>) {
        crate::sync::inject(fault);
    }

    /// A child of `ctx` registered with it at once, rather than lazily.
    pub fn registered_child(ctx: &crate::Context) -> (crate::Context, crate::CancelGuard) {
        let (child, guard) = ctx.with_cancel();
        if let Some(node) = child.node() {
            node.materialize();
        }
        (child, guard)
    }

    /// How many children are registered with `ctx`.
    pub fn children_len(ctx: &crate::Context) -> usize {
        ctx.node().map_or(0, |node| node.children_len())
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
