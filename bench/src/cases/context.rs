//! Cancellation contexts: checking for cancellation, creating and dropping a child,
//! and cancelling a parent with 100 children (idle, or each awaited).

use std::future::Future;
use std::pin::Pin;
use std::task::{self, Waker};
use std::time::Duration;

use palisade_context::{CancelGuard, Context};
use tokio_util::sync::CancellationToken;

use super::Gap;
use crate::harness::{Case, Floor, Role, bench_sync};

const CHECK: &str = "is_cancelled";
const CHILD: &str = "child create + drop";
const CANCEL: &str = "cancel with 100 children";
const CANCEL_WAITED: &str = "cancel 100 waited-on children";

const WAITED_NOTE: &str = "builds the tree, polls a boxed `cancelled()` of each child once, \
     cancels the root, polls each to completion, drops all";

pub(super) const GAPS: &[Gap] = &[];

/// A cancellable context without a deadline, and the guard that keeps it alive.
fn palisade() -> (Context, CancelGuard) {
    Context::background().with_cancel()
}

/// The waited-on workload, the same for both implementations: polls every waiter
/// once (each must be pending), cancels the root, polls each again (each must be
/// ready), then drops them. True when every waiter behaved.
fn wake_waiters<F: Future>(mut waits: Vec<Pin<Box<F>>>, cancel: impl FnOnce()) -> bool {
    let mut cx = task::Context::from_waker(Waker::noop());
    let pending = waits
        .iter_mut()
        .all(|w| w.as_mut().poll(&mut cx).is_pending());
    cancel();
    let woken = waits
        .iter_mut()
        .all(|w| w.as_mut().poll(&mut cx).is_ready());
    pending && woken
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        Case::new(
            "context",
            CHECK,
            "palisade-context",
            Role::Palisade,
            bench_sync!(palisade(), |s| s.0.is_cancelled(), |r: &bool| !*r),
        )
        .floor(Floor::Atomic)
        .key()
        .note("a cancellable context without a deadline"),
        Case::new(
            "context",
            CHECK,
            "palisade-context (with deadline)",
            Role::Palisade,
            bench_sync!(
                Context::background().with_timeout(Duration::from_secs(3600)),
                |s| s.0.is_cancelled(),
                |r: &bool| !*r
            ),
        )
        .floor(Floor::Atomic)
        .note("plus a load of the recent clock to compare with the deadline"),
        Case::new(
            "context",
            CHILD,
            "palisade-context",
            Role::Palisade,
            bench_sync!(
                palisade(),
                |s| {
                    let (child, _guard) = s.0.with_cancel();
                    child.is_cancelled()
                },
                |r: &bool| !*r
            ),
        )
        .key()
        .note("with_cancel: the child and its guard, both dropped"),
        Case::new(
            "context",
            CANCEL,
            "palisade-context",
            Role::Palisade,
            bench_sync!(
                Vec::<(Context, CancelGuard)>::with_capacity(100),
                |s| {
                    let (parent, guard) = Context::background().with_cancel();
                    s.extend((0..100).map(|_| parent.with_cancel()));
                    guard.cancel();
                    let all = s.iter().all(|(c, _)| c.is_cancelled());
                    s.clear();
                    all
                },
                |r: &bool| *r
            ),
        )
        .note("builds the tree (a root, 100 children), cancels the root, drops all"),
        Case::new(
            "context",
            CANCEL_WAITED,
            "palisade-context",
            Role::Palisade,
            bench_sync!(
                Vec::<(Context, CancelGuard)>::with_capacity(100),
                |s| {
                    let (parent, guard) = Context::background().with_cancel();
                    s.extend((0..100).map(|_| parent.with_cancel()));
                    let waits = s.iter().map(|(c, _)| Box::pin(c.cancelled())).collect();
                    let woken = wake_waiters(waits, || {
                        guard.cancel();
                    });
                    s.clear();
                    woken
                },
                |r: &bool| *r
            ),
        )
        .key()
        .note(WAITED_NOTE),
        Case::new(
            "context",
            CHECK,
            "tokio-util CancellationToken",
            Role::Peer,
            bench_sync!(
                CancellationToken::new(),
                |s| s.is_cancelled(),
                |r: &bool| !*r
            ),
        )
        .floor(Floor::Atomic)
        .key(),
        Case::new(
            "context",
            CHILD,
            "tokio-util CancellationToken",
            Role::Peer,
            bench_sync!(
                CancellationToken::new(),
                |s| s.child_token().is_cancelled(),
                |r: &bool| !*r
            ),
        )
        .key(),
        Case::new(
            "context",
            CANCEL,
            "tokio-util CancellationToken",
            Role::Peer,
            bench_sync!(
                Vec::<CancellationToken>::with_capacity(100),
                |s| {
                    let parent = CancellationToken::new();
                    s.extend((0..100).map(|_| parent.child_token()));
                    parent.cancel();
                    let all = s.iter().all(CancellationToken::is_cancelled);
                    s.clear();
                    all
                },
                |r: &bool| *r
            ),
        )
        .note("builds the tree (a root, 100 children), cancels the root, drops all"),
        Case::new(
            "context",
            CANCEL_WAITED,
            "tokio-util CancellationToken",
            Role::Peer,
            bench_sync!(
                Vec::<CancellationToken>::with_capacity(100),
                |s| {
                    let parent = CancellationToken::new();
                    s.extend((0..100).map(|_| parent.child_token()));
                    let waits = s.iter().map(|c| Box::pin(c.cancelled())).collect();
                    let woken = wake_waiters(waits, || parent.cancel());
                    s.clear();
                    woken
                },
                |r: &bool| *r
            ),
        )
        .key()
        .note(WAITED_NOTE),
    ]
}
