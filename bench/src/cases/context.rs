//! Cancellation contexts: checking for cancellation, creating and dropping a child,
//! and cancelling a parent with 100 children.

use tokio_util::sync::CancellationToken;

use super::Gap;
use crate::harness::{Case, Floor, Role, bench_sync};

const CHECK: &str = "is_cancelled";
const CHILD: &str = "child create + drop";
const CANCEL: &str = "cancel with 100 children";

pub(super) const GAPS: &[Gap] = &[];

pub(super) fn cases() -> Vec<Case> {
    vec![
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
    ]
}
